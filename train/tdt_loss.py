"""The TDT loss (Xu et al. 2023, "Efficient Sequence Transduction by Jointly Predicting Tokens
and Durations") in plain PyTorch: the forward variable over (frame, tokens emitted), with
autograd for the gradient.

From state (t, u) a token y[u] with duration d moves to (t + d, u + 1); a blank with duration
d >= 1 moves to (t + d, u). An utterance of T frames and U tokens ends with a blank from
(T - d, U) that lands exactly on T. Durations of 0 make the recursion within one frame a
linear recurrence in u, solved with a cumulative log-sum-exp instead of a loop over u.
The recursion runs in float64: the cumulative sums reach thousands of nats.
"""

from __future__ import annotations

import torch

NEG = -1.0e4  # log of "impossible": finite, so that gradients stay finite


def tdt_loss(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    frame_lengths: torch.Tensor,
    token_lengths: torch.Tensor,
    durations: tuple[int, ...],
    sigma: float = 0.0,
) -> torch.Tensor:
    """Negative log-likelihood per item, (B,).

    logits: (B, T, U+1, V+1+len(durations)), the blank is index V; tokens: (B, U) padded.
    `sigma` is TDT's logit under-normalization (subtracted from the token log-probs)."""
    b, t_max, u1, _ = logits.shape
    v1 = logits.shape[-1] - len(durations)
    token_logits = logits[..., :v1].float()
    norm = torch.logsumexp(token_logits, dim=-1)
    blank_lp = (token_logits[..., v1 - 1] - norm - sigma).double()  # (B, T, U+1)
    safe_tokens = tokens.long().clamp(min=0)
    index = safe_tokens[:, None, :, None].expand(b, t_max, u1 - 1, 1)
    label_lp = token_logits[:, :, :-1].gather(-1, index)[..., 0] - norm[:, :, :-1] - sigma
    label_lp = label_lp.double()  # (B, T, U)
    dur_lp = torch.log_softmax(logits[..., v1:].float(), dim=-1).double()  # (B, T, U+1, D)

    zero = durations.index(0) if 0 in durations else None
    steps = [(k, d) for k, d in enumerate(durations) if d > 0]
    longest = max(d for _, d in steps)
    neg_col = torch.full((b, 1), NEG, dtype=torch.float64, device=logits.device)

    # Everything that does not depend on alpha, for all frames at once: into frame t from
    # frame t - d, a blank (same u) or a token (u - 1 -> u), with duration d.
    def shifted(x: torch.Tensor, d: int) -> torch.Tensor:  # x[t - d] at t, zero before 0
        return torch.cat([torch.zeros_like(x[:, :d]), x[:, : t_max - d]], dim=1)

    into_blank = torch.stack(
        [shifted(blank_lp + dur_lp[..., k], d) for k, d in steps], dim=0
    )  # (K, B, T, U+1)
    into_token = torch.stack(
        [shifted(label_lp + dur_lp[:, :, :-1, k], d) for k, d in steps], dim=0
    )  # (K, B, T, U)
    if zero is not None:  # the within-frame recurrence's cumulative token log-probs
        same_frame = label_lp + dur_lp[:, :, :-1, zero]
        cumulative = torch.cat(
            [torch.zeros_like(same_frame[..., :1]), torch.cumsum(same_frame, dim=-1)], dim=-1
        )  # (B, T, U+1)

    start = torch.cat([torch.zeros_like(neg_col), neg_col.expand(b, u1 - 1)], dim=1)
    impossible = torch.full_like(start, NEG)
    alphas: list[torch.Tensor] = [impossible] * longest  # frames -longest .. -1
    for t in range(t_max):
        if t == 0:
            incoming = start
        else:
            previous = torch.stack([alphas[longest + t - d] for _, d in steps], dim=0)
            by_blank = previous + into_blank[:, :, t]
            by_token = previous[..., :-1] + into_token[:, :, t]
            by_token = torch.cat([neg_col.expand(len(steps), b, 1), by_token], dim=-1)
            incoming = torch.logsumexp(torch.cat([by_blank, by_token], dim=0), dim=0)
        if zero is None:
            alphas.append(incoming)
            continue
        # alpha[u] = logaddexp(incoming[u], alpha[u-1] + c[u-1]), c = token with duration 0
        c = cumulative[:, t]
        alphas.append(c + torch.logcumsumexp(incoming - c, dim=1))
    alphas = alphas[longest:]

    alpha = torch.stack(alphas, dim=1)  # (B, T, U+1)
    items = torch.arange(b, device=logits.device)
    finals = []
    for k, d in steps:
        frame = frame_lengths.long() - d
        valid = frame >= 0
        frame = frame.clamp(min=0)
        term = (
            alpha[items, frame, token_lengths.long()]
            + blank_lp[items, frame, token_lengths.long()]
            + dur_lp[items, frame, token_lengths.long(), k]
        )
        finals.append(torch.where(valid, term, torch.full_like(term, NEG)))
    return -torch.logsumexp(torch.stack(finals), dim=0)
