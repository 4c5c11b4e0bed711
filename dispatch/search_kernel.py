"""Compiled core of the improvement search: slack-induced string removals (SISR) with greedy
blink insertion under simulated-annealing acceptance (Christiaens & Vanden Berghe, 2020).

Pure numeric code on arrays built by :mod:`dispatch.search`. Jobs are 0..n-1, vehicles
0..m-1, locations index the travel matrices. A route's schedule is the earliest one (leave at
shift start, start every job at the first window point at or after arrival); that schedule
minimises every start time at once, hence lateness and overtime too. Feasibility of an
insertion is O(1) from ``late`` (the latest start at each stop that keeps the rest of the route
feasible); soft time costs, when the problem has any, are updated by walking the suffix until
start times stop changing.

A technician's meal break (``bdur[v] > 0``, start between ``beb[v]`` and ``blb[v]``) follows the
routing model's break semantics: it is taken where the technician is, between two stops
(interrupting travel or waiting), before leaving the depot or after coming back, never during
a job. Routes with a break are evaluated exactly by :func:`_break_walk`, O(route length) per
insertion check; ``st`` and ``late`` then hold their values without the break (necessary conditions, checked first).

State (per route ``v``): ``seq[v, :ln[v]]`` job order, ``st`` earliest starts, ``late`` latest
starts, ``load``, ``cost`` (arcs + job/vehicle costs + lateness + overtime), ``end`` arrival at
the route's end. ``where[j]``/``pos[j]``: route and position of job ``j`` (-1: unassigned).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE = -(1 << 62)


@njit(cache=True, inline="always")
def _rand(rng):
    """xorshift64*: a float in [0, 1), state in ``rng[0]``."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return ((x * np.uint64(2685821657736338717)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _randint(rng, lo, hi):
    """An integer in [lo, hi] (inclusive)."""
    return lo + int(_rand(rng) * (hi - lo + 1))


@njit(cache=True, inline="always")
def _earliest(wlo, whi, nw, j, t):
    """First allowed start of job ``j`` at or after ``t``, or NONE."""
    for k in range(nw[j]):
        if t <= whi[j, k]:
            return max(t, wlo[j, k])
    return NONE


@njit(cache=True, inline="always")
def _latest(wlo, whi, nw, j, t):
    """Last allowed start of job ``j`` at or before ``t``, or NONE."""
    for k in range(nw[j] - 1, -1, -1):
        if t >= wlo[j, k]:
            return min(t, whi[j, k])
    return NONE


@njit(cache=True, inline="always")
def _late_cost(due, latew, j, s):
    if due[j] == NONE or s <= due[j]:
        return 0
    return latew[j] * (s - due[j])


@njit(cache=True, inline="always")
def _ot_cost(vsoft, votw, v, t):
    return votw[v] * (t - vsoft[v]) if t > vsoft[v] else 0


@njit(cache=True)
def _break_walk(v, seq, n, c, p, T, loc, svc, wlo, whi, nw, due, latew, vend, vt0, vhard, vsoft,
                votw, vstart, beb, blb, bdur):
    """Soft cost (lateness and overtime) of route ``v`` with its meal break, job ``c`` inserted
    before position ``p`` when ``c >= 0``, or NONE when no break placement is feasible.

    Two schedules are carried along the route: before the break (earliest starts) and after
    it (earliest starts over every placement so far, the break at the earliest point that
    fits in a gap). Both are earliest, so feasibility is exact; the soft cost is that of the
    earliest placement, an upper bound on the best placement's."""
    eb, lb, dur = beb[v], blb[v], bdur[v]
    da = vt0[v]  # departure without the break so far
    ca = 0
    db = NONE  # departure with the break taken
    cb = 0
    if eb + dur <= vt0[v]:  # the break fits before the shift starts
        db = vt0[v]
    prev = vstart[v]
    k = n + 1 if c >= 0 else n
    i = 0
    for q in range(k):
        if c >= 0 and q == p:
            j = c
        else:
            j = seq[v, i]
            i += 1
        tr = T[prev, loc[j]]
        nb = NONE
        nbc = 0
        if db != NONE:
            s = _earliest(wlo, whi, nw, j, db + tr)
            if s != NONE:
                nb = s
                nbc = cb + _late_cost(due, latew, j, s)
        if da != NONE and max(da, eb) <= lb:  # the break in this gap, as early as it fits
            s = _earliest(wlo, whi, nw, j, max(da + tr, max(da, eb)) + dur)
            if s != NONE:
                sc = ca + _late_cost(due, latew, j, s)
                if nb == NONE or s < nb or (s == nb and sc < nbc):
                    nb = s
                    nbc = sc
        if da != NONE:
            s = _earliest(wlo, whi, nw, j, da + tr)
            if s == NONE or s + svc[j] > lb:  # the break could no longer be placed
                da = NONE
            else:
                ca += _late_cost(due, latew, j, s)
                da = s + svc[j]
        db = NONE if nb == NONE else nb + svc[j]
        cb = nbc
        prev = loc[j]
        if da == NONE and db == NONE:
            return NONE
    tr = T[prev, vend[v]]
    out = NONE
    if db != NONE and db + tr <= vhard[v]:
        out = cb + _ot_cost(vsoft, votw, v, db + tr)
    if da != NONE:
        e = da + tr
        if e > lb:  # not back before the break's latest start: take it on the way back
            e = max(da + tr, max(da, eb)) + dur
        if e <= vhard[v]:
            sc = ca + _ot_cost(vsoft, votw, v, e)
            if out == NONE or sc < out:
                out = sc
    return out


@njit(cache=True)
def update_route(v, seq, ln, st, late, load, cost, end, where, pos, T, C, loc, svc, dem, wlo, whi,
                 nw, due, latew, jv, vstart, vend, vt0, vhard, vsoft, votw, beb, blb, bdur):
    """Recompute route ``v``'s schedule, slack, load and cost; False when it is infeasible."""
    n = ln[v]
    if n == 0:
        load[v] = 0
        cost[v] = 0
        end[v] = vt0[v]
        return True
    t = vt0[v]
    prev = vstart[v]
    c = 0
    q = 0
    for i in range(n):
        j = seq[v, i]
        where[j] = v
        pos[j] = i
        s = _earliest(wlo, whi, nw, j, t + T[prev, loc[j]])
        if s == NONE:
            return False
        st[v, i] = s
        c += C[prev, loc[j]] + jv[j, v] + _late_cost(due, latew, j, s)
        q += dem[j]
        t = s + svc[j]
        prev = loc[j]
    t += T[prev, vend[v]]
    if t > vhard[v]:
        return False
    c += C[prev, vend[v]] + _ot_cost(vsoft, votw, v, t)
    if bdur[v] > 0:
        with_break = _break_walk(v, seq, n, -1, 0, T, loc, svc, wlo, whi, nw, due, latew, vend,
                                 vt0, vhard, vsoft, votw, vstart, beb, blb, bdur)
        if with_break == NONE:
            return False
        c = 0
        prev = vstart[v]
        for i in range(n):
            j = seq[v, i]
            c += C[prev, loc[j]] + jv[j, v]
            prev = loc[j]
        c += C[prev, vend[v]] + with_break
    end[v] = t
    load[v] = q
    cost[v] = c
    bound = vhard[v]
    nxt = vend[v]
    for i in range(n - 1, -1, -1):
        j = seq[v, i]
        bound = _latest(wlo, whi, nw, j, bound - T[loc[j], nxt] - svc[j])
        late[v, i] = bound
        nxt = loc[j]
    return True


@njit(cache=True, inline="always")
def insertion_delta(c, v, p, seq, ln, st, late, end, T, C, loc, svc, wlo, whi, nw, due, latew,
                    jv, vstart, vend, vt0, vhard, vsoft, votw, soft, beb, blb, bdur, bold):
    """Cost change of inserting job ``c`` before position ``p`` of route ``v``, or NONE.
    ``bold``: the route's soft cost with its meal break (when it has one and ``soft``)."""
    n = ln[v]
    if p == 0:
        dep = vt0[v]
        a = vstart[v]
    else:
        a = loc[seq[v, p - 1]]
        dep = st[v, p - 1] + svc[seq[v, p - 1]]
    b = vend[v] if p == n else loc[seq[v, p]]
    lc = loc[c]
    s = _earliest(wlo, whi, nw, c, dep + T[a, lc])
    if s == NONE:
        return NONE
    t = s + svc[c] + T[lc, b]
    if p == n:
        if t > vhard[v]:
            return NONE
    elif t > late[v, p]:
        return NONE
    if n == 0:
        delta = C[a, lc] + C[lc, b] + jv[c, v]
    else:
        delta = C[a, lc] + C[lc, b] - C[a, b] + jv[c, v]
    if bdur[v] > 0:  # the checks above ignore the break: evaluate the whole route with it
        new = _break_walk(v, seq, n, c, p, T, loc, svc, wlo, whi, nw, due, latew, vend, vt0,
                          vhard, vsoft, votw, vstart, beb, blb, bdur)
        if new == NONE:
            return NONE
        if soft:
            delta += new - bold
        return delta
    if soft:
        delta += _late_cost(due, latew, c, s)
        t = s + svc[c]
        prev = lc
        i = p
        while i < n:
            j = seq[v, i]
            ns = _earliest(wlo, whi, nw, j, t + T[prev, loc[j]])
            if ns == st[v, i]:
                break
            delta += _late_cost(due, latew, j, ns) - _late_cost(due, latew, j, st[v, i])
            t = ns + svc[j]
            prev = loc[j]
            i += 1
        if i == n:
            new_end = t + T[prev, vend[v]]
            old = _ot_cost(vsoft, votw, v, end[v]) if n > 0 else 0
            delta += _ot_cost(vsoft, votw, v, new_end) - old
    return delta


@njit(cache=True)
def _copy_routes(vs, nv, sseq, sln, sst, slate, sload, scost, send, dseq, dln, dst, dlate, dload,
                 dcost, dend, where, pos):
    """Make routes ``vs[:nv]`` of the destination equal to the source's (jobs pointing at them)."""
    for r in range(nv):
        v = vs[r]
        for i in range(dln[v]):
            where[dseq[v, i]] = -1
    for r in range(nv):
        v = vs[r]
        n = sln[v]
        for i in range(n):
            j = sseq[v, i]
            dseq[v, i] = j
            dst[v, i] = sst[v, i]
            dlate[v, i] = slate[v, i]
            where[j] = v
            pos[j] = i
        dln[v] = n
        dload[v] = sload[v]
        dcost[v] = scost[v]
        dend[v] = send[v]


@njit(cache=True)
def search(iters, t_hi, t_lo, rng, params,
           seq, ln, st, late, load, cost, end, where, pos,
           bseq, bln, best,
           T, C, loc, svc, dem, wlo, whi, nw, due, latew, drop, jv, adj, far,
           vstart, vend, vt0, vhard, vsoft, votw, vcap, soft, beb, blb, bdur):
    """Run ``iters`` ruin-and-recreate iterations from the current state (modified in place),
    with the temperature falling geometrically from ``t_hi`` to ``t_lo``. ``best[0]`` is the
    best total cost seen (its routes in ``bseq``/``bln``), ``best[1]`` the current total.
    ``params``: average removed jobs, maximal string length, blink rate, split depth, and how
    many nearest neighbours' routes (besides empty ones) an insertion tries."""
    m = seq.shape[0]
    n = loc.shape[0]
    c_bar, l_max, blink, split, granular = params[0], params[1], params[2], params[3], params[4]
    # working copy
    wseq = seq.copy()
    wln = ln.copy()
    wst = st.copy()
    wlate = late.copy()
    wload = load.copy()
    wcost = cost.copy()
    wend = end.copy()
    wwhere = where.copy()
    wpos = pos.copy()
    touched = np.zeros(m, np.bool_)
    near = np.zeros(m, np.bool_)
    tlist = np.empty(m, np.int64)
    removed = np.empty(n, np.int64)
    keys = np.empty(n, np.float64)
    buf = np.empty(seq.shape[1], np.int64)
    cur_total = best[1]
    for it in range(iters):
        temp = t_hi * (t_lo / t_hi) ** (it / max(1, iters)) if t_hi > 0 else 0.0
        nt = 0
        nr = 0
        # ---- ruin: strings from routes near a random seed job ----
        used = 0
        total_len = 0
        for v in range(m):
            if wln[v] > 0:
                used += 1
                total_len += wln[v]
        avg = total_len / used if used > 0 else 1.0
        ls_max = min(l_max, avg)
        ks_max = 4.0 * c_bar / (1.0 + ls_max) - 1.0
        ks = int(_rand(rng) * ks_max) + 1
        seed_job = _randint(rng, 0, n - 1)
        for k in range(adj.shape[1] + 1):
            if nt >= ks:
                break
            c = seed_job if k == 0 else adj[seed_job, k - 1]
            if c < 0:
                break
            v = wwhere[c]
            if v < 0:
                inlist = False
                for r in range(nr):
                    if removed[r] == c:
                        inlist = True
                if not inlist:
                    removed[nr] = c
                    nr += 1
                continue
            if touched[v]:
                continue
            touched[v] = True
            tlist[nt] = v
            nt += 1
            rl = wln[v]
            lt = int(_rand(rng) * min(float(rl), ls_max)) + 1
            pc = wpos[c]
            if lt < rl and _rand(rng) < 0.5:  # split string: keep m_keep stops inside it
                m_keep = 1
                while lt + m_keep < rl and _rand(rng) > split:
                    m_keep += 1
                total = lt + m_keep
                lo = max(0, pc - total + 1)
                hi = min(pc, rl - total)
                first = _randint(rng, lo, hi)
                keep_at = _randint(rng, first, first + lt)
                cut_from, cut_to = first, first + total
            else:
                lo = max(0, pc - lt + 1)
                hi = min(pc, rl - lt)
                first = _randint(rng, lo, hi)
                keep_at = -1
                m_keep = 0
                cut_from, cut_to = first, first + lt
            nb = 0
            for i in range(rl):
                j = wseq[v, i]
                if cut_from <= i < cut_to and not (keep_at <= i < keep_at + m_keep):
                    removed[nr] = j
                    nr += 1
                    wwhere[j] = -1
                else:
                    buf[nb] = j
                    nb += 1
            for i in range(nb):
                wseq[v, i] = buf[i]
            wln[v] = nb
        feasible = True
        for r in range(nt):
            v = tlist[r]
            if not update_route(v, wseq, wln, wst, wlate, wload, wcost, wend, wwhere, wpos, T, C,
                                loc, svc, dem, wlo, whi, nw, due, latew, jv, vstart, vend, vt0,
                                vhard, vsoft, votw, beb, blb, bdur):
                feasible = False
        # ---- recreate: greedy insertion with blinks, in a random order of four ----
        if feasible and nr > 0:
            u = _rand(rng) * 11.0
            for r in range(nr):
                j = removed[r]
                if u < 4.0:
                    keys[r] = _rand(rng)
                elif u < 8.0:
                    keys[r] = -dem[j] - _rand(rng) * 1e-3
                elif u < 10.0:
                    keys[r] = -far[j] - _rand(rng) * 1e-3
                else:
                    keys[r] = far[j] + _rand(rng) * 1e-3
            order = np.argsort(keys[:nr])
            for oi in range(nr):
                c = removed[order[oi]]
                best_d = NONE
                best_v = -1
                best_p = -1
                for k in range(min(granular, adj.shape[1])):
                    if adj[c, k] >= 0 and wwhere[adj[c, k]] >= 0:
                        near[wwhere[adj[c, k]]] = True
                for v in range(m):
                    if jv[c, v] < 0 or wload[v] + dem[c] > vcap[v] or not (near[v] or wln[v] == 0):
                        continue
                    bold = 0
                    if soft and bdur[v] > 0:
                        bold = _break_walk(v, wseq, wln[v], -1, 0, T, loc, svc, wlo, whi, nw, due,
                                           latew, vend, vt0, vhard, vsoft, votw, vstart, beb, blb,
                                           bdur)
                    for p in range(wln[v] + 1):
                        if p > 0 and (wst[v, p - 1] + svc[wseq[v, p - 1]]
                                      + T[loc[wseq[v, p - 1]], loc[c]] > whi[c, nw[c] - 1]):
                            break  # too late for every later position too
                        if _rand(rng) < blink:
                            continue
                        d = insertion_delta(c, v, p, wseq, wln, wst, wlate, wend, T, C, loc, svc,
                                            wlo, whi, nw, due, latew, jv, vstart, vend, vt0,
                                            vhard, vsoft, votw, soft, beb, blb, bdur, bold)
                        if d != NONE and (best_v < 0 or d < best_d):
                            best_d = d
                            best_v = v
                            best_p = p
                near[:] = False
                if best_v < 0:
                    continue
                v = best_v
                for i in range(wln[v], best_p, -1):
                    wseq[v, i] = wseq[v, i - 1]
                wseq[v, best_p] = c
                wln[v] += 1
                if not touched[v]:
                    touched[v] = True
                    tlist[nt] = v
                    nt += 1
                update_route(v, wseq, wln, wst, wlate, wload, wcost, wend, wwhere, wpos, T, C,
                             loc, svc, dem, wlo, whi, nw, due, latew, jv, vstart, vend, vt0,
                             vhard, vsoft, votw, beb, blb, bdur)
        # ---- accept or undo ----
        accept = False
        new_total = 0
        if feasible:
            for v in range(m):
                new_total += wcost[v]
            for j in range(n):
                if wwhere[j] < 0:
                    new_total += drop[j]
            if new_total < cur_total or (temp > 0 and new_total < cur_total - temp * np.log(
                    max(_rand(rng), 1e-300))):
                accept = True
        for r in range(nt):
            touched[tlist[r]] = False
        if accept:
            _copy_routes(tlist, nt, wseq, wln, wst, wlate, wload, wcost, wend, seq, ln, st, late,
                         load, cost, end, where, pos)
            cur_total = new_total
            if new_total < best[0]:
                best[0] = new_total
                for v in range(m):
                    bln[v] = ln[v]
                    for i in range(ln[v]):
                        bseq[v, i] = seq[v, i]
        else:
            _copy_routes(tlist, nt, seq, ln, st, late, load, cost, end, wseq, wln, wst, wlate,
                         wload, wcost, wend, wwhere, wpos)
    best[1] = cur_total
