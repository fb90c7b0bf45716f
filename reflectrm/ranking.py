"""Group-wise rewards with no reference: the G responses to one prompt (a GRPO group) judged against
each other, pairwise, and the outcomes turned into one score per response.

    comparisons(4, "circular")   -> (0,1) (1,0) (1,2) (2,1) (2,3) (3,2) (3,0) (0,3): 2G judgments
    comparisons(4, "all_pairs")  -> every ordered pair: G(G-1) judgments
    group_scores(4, [(i, j, score), ...], "win_rate" | "bradley_terry") -> one score in [0, 1] each

Each judgment is the two-stage judge on (prompt, response i, response j); its `score` is the share of
final votes for position 1 (method.md §4), i.e. P(i beats j) as that judgment sees it. Both orders of
each compared pair are judged, so the judge's position bias cancels. This is NeMo Gym's `genrm_compare`
scheme (../shared/docs/protocols.md); a group of one has nothing to compare with and gets no score.

`GroupCollector` gathers responses that arrive one per request (OpenRLHF sends one sample per POST)
into their prompt's group, and ranks the group once it is full or its wait has passed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Scheme = Literal["circular", "all_pairs"]
Method = Literal["win_rate", "bradley_terry"]
SCHEMES: tuple[str, ...] = ("circular", "all_pairs")
METHODS: tuple[str, ...] = ("win_rate", "bradley_terry")


def comparisons(g: int, scheme: Scheme = "circular") -> list[tuple[int, int]]:
    """The ordered pairs (i, j) to judge, response i in position 1: both orders of each compared pair.
    circular compares each response with the next (2G judgments; 2 for G = 2); all_pairs, all of them."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r}: use one of {', '.join(SCHEMES)}")
    if g < 2:
        return []
    if scheme == "all_pairs" or g == 2:
        unordered = [(i, j) for i in range(g) for j in range(i + 1, g)]
    else:
        unordered = [(i, (i + 1) % g) for i in range(g)]
    return [p for i, j in unordered for p in ((i, j), (j, i))]


def group_scores(g: int, outcomes: Sequence[tuple[int, int, float]], method: Method = "win_rate") -> list[float]:
    """One score per response from judged outcomes (i, j, P(i beats j)).

    win_rate: the mean P(win) over the response's comparisons, either position.
    bradley_terry: strengths p fitted to the fractional wins (Hunter's MM algorithm, one half-win
    against every compared opponent as a prior, so that an unbeaten response stays finite), reported
    as the mean P(beats another member) = mean_j p_i / (p_i + p_j) over the group.
    A response in no comparison gets 0.5."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {', '.join(METHODS)}")
    wins = [[0.0] * g for _ in range(g)]  # wins[i][j]: i's (fractional) wins over j
    games = [[0] * g for _ in range(g)]
    for i, j, s in outcomes:
        s = min(1.0, max(0.0, float(s)))
        wins[i][j] += s
        wins[j][i] += 1.0 - s
        games[i][j] += 1
        games[j][i] += 1
    played = [sum(row) for row in games]
    if method == "win_rate":
        return [sum(wins[i]) / played[i] if played[i] else 0.5 for i in range(g)]
    prior = 0.5
    w = [[wins[i][j] + (prior if games[i][j] else 0.0) for j in range(g)] for i in range(g)]
    n = [[games[i][j] + (2 * prior if games[i][j] else 0.0) for j in range(g)] for i in range(g)]
    p = [1.0] * g
    for _ in range(200):
        new = []
        for i in range(g):
            denom = sum(n[i][j] / (p[i] + p[j]) for j in range(g) if n[i][j])
            new.append(sum(w[i]) / denom if denom else p[i])
        scale = math.exp(sum(math.log(x) for x in new) / g)  # fix the scale: geometric mean 1
        new = [x / scale for x in new]
        done = max(abs(a - b) for a, b in zip(new, p)) < 1e-9
        p = new
        if done:
            break
    others = max(g - 1, 1)
    return [sum(p[i] / (p[i] + p[j]) for j in range(g) if j != i) / others if played[i] else 0.5 for i in range(g)]


# --------------------------------------------------------------------------- one response per request


@dataclass
class _Group:
    responses: list[str] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


RankFn = Callable[[Any, list[str]], Awaitable[list[float]]]


class GroupCollector:
    """Responses to one prompt that arrive in separate calls, gathered into one group and ranked together.

    `await collector.score(key, context, response)` waits until the group of `key` has `size` responses
    (or `wait_s` has passed since its first one), then `rank(context, responses)` scores them all and
    each caller gets its own response's score. A group that closes with one response gets None (it has
    nothing to compare with). If `rank` raises, every caller of that group gets the exception."""

    def __init__(self, rank: RankFn, size: int, wait_s: float):
        if size < 2 or wait_s <= 0:
            raise ValueError(f"a group needs size >= 2 and wait_s > 0, got size={size}, wait_s={wait_s}")
        self.rank, self.size, self.wait_s = rank, size, wait_s
        self.open: dict[str, tuple[Any, _Group]] = {}

    async def score(self, key: str, context: Any, response: str) -> float | None:
        loop = asyncio.get_running_loop()
        if key not in self.open:
            self.open[key] = (context, _Group())
            self.open[key][1].timer = loop.call_later(self.wait_s, self._close, key)
        _, group = self.open[key]
        future: asyncio.Future = loop.create_future()
        group.responses.append(response)
        group.futures.append(future)
        if len(group.responses) >= self.size:
            self._close(key)
        return await future

    def _close(self, key: str) -> None:
        if key not in self.open:
            return
        context, group = self.open.pop(key)
        if group.timer is not None:
            group.timer.cancel()
        if len(group.responses) < 2:
            for f in group.futures:
                if not f.done():
                    f.set_result(None)
            return
        asyncio.ensure_future(self._rank(context, group))

    async def _rank(self, context: Any, group: _Group) -> None:
        try:
            scores = await self.rank(context, group.responses)
        except Exception as err:  # noqa: BLE001 (handed to every caller of the group)
            for f in group.futures:
                if not f.done():
                    f.set_exception(err)
            return
        for f, s in zip(group.futures, scores):
            if not f.done():
                f.set_result(s)
