"""The CPU hot loop of the Sobol accumulator: one fused pass over a Saltelli batch.

Written by hand (numba) because no library does this reduction well on a CPU: every
activation needs ~40 products of its own rows summed per unit of base points. In torch
that takes a transposing copy of the outputs plus a batched 11 x 11 GEMM per activation
and unit (most of whose entries are unused) and a dozen passes to fold the results; this
kernel reads each output value once, keeps a unit's sums for a block of columns in
cache, and folds them into the state in place: about 2x faster than the torch path on
two cores (docs/performance.md), and its results do not depend on the batch size or the
thread count (columns are independent; units are folded in order). GPUs keep the torch
path, which suits them. The first use compiles it (~8 s per input dtype, then cached on
disk next to this file, or in numba's user cache where that is read-only).

Sums are of values shifted per column (`shift`), with AB_j - A formed before squaring, as
in the torch path; base points with a non-finite value in any of their rows are left
out for that column, and their non-finite values counted.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from torch import Tensor

# Columns per block: 512 float64 = one 4 KiB page per output row (a narrower block
# touches a new page for every few values it reads), and a unit's sums stay in L2.
BLOCK = 512
# State arrays the kernel updates, in its argument order (second-order ones last)
FIRST_ORDER_STATS = ("n", "w2", "nonfinite", "s_a", "s_b", "s_aa", "s_bb", "s_all2",
                     "s_ab", "p", "t", "pp", "pq", "qq", "np", "nq", "tt", "nt")
SECOND_ORDER_STATS = ("s_ba", "q")


# The kernels are small functions over contiguous column views: each loop then vectorises
# (numba's negative-index wrap-around defeats the vectoriser on indices like c0 + c, and
# several stores in one loop make it give up on aliasing), and compiling them takes a few
# seconds once (cached on disk) instead of the half minute a parallel, inlined kernel took.
JIT = {"nogil": True, "cache": True, "fastmath": {"contract"}, "boundscheck": False}


@numba.njit(**JIT)
def _set_shifted(dst, x, shift):  # pragma: no cover - compiled
    for c in range(dst.shape[0]):
        dst[c] = np.float64(x[c]) - shift[c]


@numba.njit(**JIT)
def _set_difference(dst, x, y):  # pragma: no cover - compiled
    for c in range(dst.shape[0]):
        dst[c] = x[c] - y[c]


@numba.njit(**JIT)
def _add(dst, x):  # pragma: no cover - compiled
    for c in range(dst.shape[0]):
        dst[c] += x[c]


@numba.njit(**JIT)
def _add_scaled(dst, x, a):  # pragma: no cover - compiled
    for c in range(dst.shape[0]):
        dst[c] += a * x[c]


@numba.njit(**JIT)
def _add_product(dst, x, y):  # pragma: no cover - compiled
    for c in range(dst.shape[0]):
        dst[c] += x[c] * y[c]


@numba.njit(**JIT)
def _keep_finite(z, count, bad):  # pragma: no cover - compiled
    """Zero the columns of a point's rows z that hold a non-finite value (the point is left
    out there), count those values into `bad`, and add 1 to `count` where it is kept."""
    for c in range(z.shape[1]):
        finite = True
        for r in range(z.shape[0]):
            if z[r, c] - z[r, c] != 0.0:  # inf or nan
                bad[c] += 1.0
                finite = False
        if finite:
            count[c] += 1.0
        else:
            z[:, c] = 0.0


@numba.njit(**JIT)
def _layout(d):  # pragma: no cover - compiled
    """First rows, in a unit's sums, of: B (AB_j - A), AB_j - A, (AB_j - A)^2, A (AB_j - A),
    BA_j^2, BA_j, BA_j A (d rows each), BA_j (AB_k - A) (a row per pair j < k), A B."""
    o_bd = 5 + 7 * d
    return 5, 5 + d, 5 + 2 * d, 5 + 3 * d, 5 + 4 * d, 5 + 5 * d, 5 + 6 * d, o_bd, o_bd + d * (d - 1) // 2


@numba.njit(**JIT)
def _unit_sums(acc, y, c0, c1, shift, d, second, careful, z, dif, bad):  # pragma: no cover - compiled
    """One unit's sums over its points for columns c0:c1 of y (points, rows per point, M)
    into `acc`. Rows of acc: count, A, B, A^2, B^2; per group j: B (AB_j - A), AB_j - A,
    (AB_j - A)^2, A (AB_j - A); second order: per j BA_j^2, BA_j, BA_j A, per pair j < k
    BA_j (AB_k - A), and A B (all shifted). `careful` leaves out, per column, the points
    with a non-finite value and counts those values into `bad`."""
    points, rpp = y.shape[0], y.shape[1]
    o_p, o_q, o_t, o_ad, o_bsq, o_sba, o_baa, o_bd, o_ab = _layout(d)
    acc[:] = 0.0
    a, b = z[0], z[rpp - 1]
    for i in range(points):
        for r in range(rpp):
            _set_shifted(z[r], y[i, r, c0:c1], shift)
        if careful:
            _keep_finite(z, acc[0], bad)
        else:
            acc[0] += 1.0
        _add(acc[1], a)
        _add(acc[2], b)
        _add_product(acc[3], a, a)
        _add_product(acc[4], b, b)
        for j in range(d):
            _set_difference(dif[j], z[1 + j], a)
            _add_product(acc[o_p + j], b, dif[j])
            _add(acc[o_q + j], dif[j])
            _add_product(acc[o_t + j], dif[j], dif[j])
            _add_product(acc[o_ad + j], a, dif[j])
        if second:
            _add_product(acc[o_ab], a, b)
            pair = 0
            for j in range(d):
                ba = z[1 + d + j]
                _add_product(acc[o_bsq + j], ba, ba)
                _add(acc[o_sba + j], ba)
                _add_product(acc[o_baa + j], ba, a)
                for k in range(j + 1, d):
                    _add_product(acc[o_bd + pair], ba, dif[k])
                    pair += 1


@numba.njit(**JIT)
def _rows_finite(acc, k0, k1):  # pragma: no cover - compiled
    for k in range(k0, k1):
        for c in range(acc.shape[1]):
            if acc[k, c] - acc[k, c] != 0.0:  # inf or nan
                return False
    return True


@numba.njit(**JIT)
def _all_finite(acc, d, second):  # pragma: no cover - compiled
    """Whether the unit's sums of squares (A^2, B^2, (AB_j - A)^2, BA_j^2) are finite: a
    non-finite output value always reaches one of them (squares cannot cancel)."""
    return (_rows_finite(acc, 3, 5) and _rows_finite(acc, 5 + 2 * d, 5 + 3 * d)
            and (not second or _rows_finite(acc, 5 + 4 * d, 5 + 5 * d)))


@numba.njit(**JIT)
def _fold_units(y, shift, d, second, c_start, c_stop, n, w2, nonfinite, s_a, s_b, s_aa, s_bb,  # noqa: PLR0913
                s_all2, s_ab, p, t, pp, pq, qq, np_, nq, tt, nt, s_ba, q):  # pragma: no cover - compiled
    """Fold every unit of y (units, points, rows per point, M) into the state, for columns
    c_start:c_stop, in blocks of BLOCK columns (units in order: the result does not depend
    on how columns are split between threads)."""
    rpp = y.shape[2]
    o_p, o_q, o_t, o_ad, o_bsq, o_sba, o_baa, o_bd, o_ab = _layout(d)
    rows = o_ab + 1 if second else o_bsq
    for c0 in range(c_start, c_stop, BLOCK):
        c1 = min(c0 + BLOCK, c_stop)
        # fresh C-contiguous buffers per block (views of wider ones would be strided for numba)
        au, zu, du = np.empty((rows, c1 - c0)), np.empty((rpp, c1 - c0)), np.empty((d, c1 - c0))
        for u in range(y.shape[0]):
            _unit_sums(au, y[u], c0, c1, shift[c0:c1], d, second, False, zu, du, nonfinite[c0:c1])
            if not _all_finite(au, d, second):  # rare: sum the unit again, leaving points out
                _unit_sums(au, y[u], c0, c1, shift[c0:c1], d, second, True, zu, du, nonfinite[c0:c1])
            # the unit's sums, and the squares and products of unit sums that the
            # batch-means intervals need
            cnt, sa = au[0], au[1]
            _add(n[c0:c1], cnt)
            _add_product(w2[c0:c1], cnt, cnt)
            _add(s_a[c0:c1], sa)
            _add(s_b[c0:c1], au[2])
            _add(s_aa[c0:c1], au[3])
            _add(s_bb[c0:c1], au[4])
            all2 = s_all2[c0:c1]
            _add(all2, au[4])
            _add_scaled(all2, au[3], d + 1.0)
            for j in range(d):
                pu, qu, tu = au[o_p + j], au[o_q + j], au[o_t + j]
                _add(s_ab[j, c0:c1], qu)
                _add(s_ab[j, c0:c1], sa)
                _add(p[j, c0:c1], pu)
                _add(t[j, c0:c1], tu)
                _add_product(pp[j, c0:c1], pu, pu)
                _add_product(pq[j, c0:c1], pu, qu)
                _add_product(qq[j, c0:c1], qu, qu)
                _add_product(tt[j, c0:c1], tu, tu)
                _add_product(np_[j, c0:c1], cnt, pu)
                _add_product(nq[j, c0:c1], cnt, qu)
                _add_product(nt[j, c0:c1], cnt, tu)
                _add(all2, tu)  # AB_j^2 = (AB_j - A)^2 + 2 A (AB_j - A) + A^2 (A^2 added above)
                _add_scaled(all2, au[o_ad + j], 2.0)
            if second:
                pair = 0
                for j in range(d):
                    _add(all2, au[o_bsq + j])
                    _add(s_ba[j, c0:c1], au[o_sba + j])
                    for _k in range(j + 1, d):
                        # sum BA_j AB_k - A B = sum BA_j (AB_k - A) + sum BA_j A - sum A B
                        _add(q[pair, c0:c1], au[o_bd + pair])
                        _add(q[pair, c0:c1], au[o_baa + j])
                        _add_scaled(q[pair, c0:c1], au[o_ab], -1.0)
                        pair += 1


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
os.register_at_fork(after_in_child=_pools.clear)  # a forked child has none of the parent's threads


def _executor(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per thread count for the column ranges (the kernel releases the GIL)."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sa-frame-sobol")
        return _pools[threads]


def fold_units(stats: dict[str, Tensor], y: Tensor, n_groups: int, second_order: bool) -> None:
    """Fold units of outputs y (units, points, rows per point, M) on the CPU into the
    Sobol state `stats` (float64 tensors of M columns, updated in place), on as many
    threads as torch uses, each over its own range of whole column blocks."""
    m = y.shape[-1]
    if m == 0 or y.shape[0] == 0:
        return
    if y.dtype not in (torch.float32, torch.float64):
        y = y.to(torch.float64)
    names = FIRST_ORDER_STATS + (SECOND_ORDER_STATS if second_order else ())
    for key in names + ("shift",):
        if not stats[key].is_contiguous():
            stats[key] = stats[key].contiguous()
    arrays = [stats[key].numpy() for key in names]
    if not second_order:
        empty = np.zeros((0, m))
        arrays += [empty, empty]
    args = (y.detach().contiguous().numpy(), stats["shift"].numpy(), n_groups, second_order)
    blocks = math.ceil(m / BLOCK)
    threads = max(1, min(torch.get_num_threads(), blocks))
    step = math.ceil(blocks / threads) * BLOCK
    ranges = [(c0, min(c0 + step, m)) for c0 in range(0, m, step)]
    if len(ranges) == 1:
        _fold_units(*args, 0, m, *arrays)
        return
    jobs = [_executor(len(ranges)).submit(_fold_units, *args, c0, c1, *arrays) for c0, c1 in ranges]
    for job in jobs:
        job.result()
