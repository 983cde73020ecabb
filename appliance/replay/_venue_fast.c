/* The replay venue's recorded-book bookkeeping in C (appliance/replay/venue.py is the reference).
 *
 * ``Core(venue)`` follows the recorded day for a ``ReplayVenue``: ``on_itch(raw)`` does what the venue's
 * Python ``on_itch`` does for every recorded message (our actions due before it, ``now_ns``, the
 * recorded orders by reference, the recorded levels), with the same state the Python code reads:
 * the levels are the venue's own ``book.levels`` dicts (price -> shares), ``book.taken`` is kept the
 * same way, ``venue._adds`` is the recorded add sequence. Only the recorded orders by reference live
 * here (an open-addressing table): ``orders()`` gives them as the Python ``venue.orders`` dict.
 *
 * Whatever touches our orders stays in Python, called back exactly where the reference calls it:
 * ``venue._crossed_by_add``, ``venue._traded``, ``venue._cancel_at`` (the queue model), and the rare
 * messages ``venue._directory`` ('R') and ``venue._trading_action`` ('H'); ``venue._arrive`` for our
 * actions. So a message on a side where we rest no order costs no Python at all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t ref;
    int64_t price;
    int64_t shares;
    uint64_t added;
    int32_t sid;
    uint8_t is_buy;
    uint8_t used;
} Entry;

typedef struct {
    PyObject_HEAD
    PyObject *venue;
    PyObject *books;            /* list of _Symbol */
    PyObject *book_of_locate;   /* list[65536] of _Symbol | None */
    PyObject *inbound;          /* deque of (arrive_ns, handler, args) */
    Py_ssize_t nbooks;
    PyObject **levels;          /* [2 * nbooks]: index sid * 2 + is_buy */
    PyObject **ours;
    PyObject **taken;
    long long *best;            /* [2 * nbooks]: the best price of a side's levels while best_known */
    unsigned char *best_known;  /* 0: to be found again (the best level went), see Core_best */
    PyObject *loc_book[65536];  /* cache: the _Symbol last seen at a locate (compared only) */
    int32_t loc_sid[65536];
    Entry *table;
    uint64_t mask;
    uint64_t count;
    uint64_t adds;
    int64_t messages, unsubscribed, unknown_order, duplicate_add;
} Core;

static PyObject *s_now_ns, *s_adds, *s_arrive, *s_crossed, *s_traded, *s_cancel_at, *s_directory,
    *s_trading_action, *s_sid, *s_levels, *s_ours, *s_taken, *s_books, *s_book_of_locate, *s_inbound;

/* ------------------------------------------------------------------ the table of recorded orders */

static inline uint64_t slot_of(const Core *c, uint64_t ref) {
    return (ref * 0x9E3779B97F4A7C15ULL >> 17) & c->mask;
}

static Entry *find(Core *c, uint64_t ref) {
    uint64_t i = slot_of(c, ref);
    for (;;) {
        Entry *e = &c->table[i];
        if (!e->used) return NULL;
        if (e->ref == ref) return e;
        i = (i + 1) & c->mask;
    }
}

static int grow(Core *c) {
    uint64_t old_cap = c->mask + 1, cap = old_cap * 2;
    Entry *old = c->table;
    Entry *table = PyMem_Calloc(cap, sizeof(Entry));
    if (!table) { PyErr_NoMemory(); return -1; }
    c->table = table;
    c->mask = cap - 1;
    for (uint64_t k = 0; k < old_cap; k++) {
        if (!old[k].used) continue;
        uint64_t i = slot_of(c, old[k].ref);
        while (table[i].used) i = (i + 1) & c->mask;
        table[i] = old[k];
    }
    PyMem_Free(old);
    return 0;
}

static Entry *insert(Core *c, uint64_t ref) {   /* ref not present */
    if ((c->count + 1) * 2 > c->mask + 1 && grow(c) < 0) return NULL;
    uint64_t i = slot_of(c, ref);
    while (c->table[i].used) i = (i + 1) & c->mask;
    Entry *e = &c->table[i];
    e->used = 1;
    e->ref = ref;
    c->count++;
    return e;
}

static void erase(Core *c, Entry *e) {           /* backward-shift deletion: no tombstones */
    uint64_t i = (uint64_t)(e - c->table), j = i;
    c->table[i].used = 0;
    for (;;) {
        j = (j + 1) & c->mask;
        if (!c->table[j].used) break;
        uint64_t home = slot_of(c, c->table[j].ref);
        /* move j into the hole at i unless its home is cyclically in (i, j] */
        int home_between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!home_between) {
            c->table[i] = c->table[j];
            c->table[j].used = 0;
            i = j;
        }
    }
    c->count--;
}

/* ------------------------------------------------------------------ helpers */

static inline int get_i64(PyObject *raw, Py_ssize_t k, int64_t *out) {
    long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(raw, k));
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static inline int get_u64(PyObject *raw, Py_ssize_t k, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(raw, k));
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static inline int is_b(PyObject *o) {
    return PyBytes_Check(o) && PyBytes_GET_SIZE(o) == 1 && PyBytes_AS_STRING(o)[0] == 'B';
}

/* The sid of the book at ``locate`` (-1: none). */
static int32_t sid_at(Core *c, Py_ssize_t locate) {
    if (locate < 0 || locate >= 65536) return -1;
    PyObject *book = PyList_GET_ITEM(c->book_of_locate, locate);
    if (book == Py_None) return -1;
    if (c->loc_book[locate] == book) return c->loc_sid[locate];
    PyObject *sid_obj = PyObject_GetAttr(book, s_sid);
    if (!sid_obj) return -2;
    long sid = PyLong_AsLong(sid_obj);
    Py_DECREF(sid_obj);
    if (sid == -1 && PyErr_Occurred()) return -2;
    if (sid < 0 || sid >= c->nbooks) { PyErr_SetString(PyExc_RuntimeError, "a book's sid out of range"); return -2; }
    c->loc_book[locate] = book;
    c->loc_sid[locate] = (int32_t)sid;
    return (int32_t)sid;
}

/* d[price] as int64 (0 when absent); -1 on error */
static int dict_get(PyObject *d, PyObject *key, int64_t *out) {
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (!v) { if (PyErr_Occurred()) return -1; *out = 0; return 0; }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static int dict_set(PyObject *d, PyObject *key, int64_t value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (!v) return -1;
    int r = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return r;
}

static int dict_del(PyObject *d, PyObject *key) {     /* d.pop(key, None) */
    if (PyDict_DelItem(d, key) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) return -1;
        PyErr_Clear();
    }
    return 0;
}

static PyObject *book_of(Core *c, int32_t sid) { return PyList_GET_ITEM(c->books, sid); }

/* Does ``ours`` (price -> our orders, one side) hold a price at or beyond ``price`` as ``beyond`` says: 1 for
 * prices <= price, 0 for prices >= price? The callbacks below find nothing to do without one, so they are
 * called only when there is (``_crossed_by_add``: an add crossing one of ours; ``_traded``: ours at the
 * traded price or traded through). 1 yes, 0 no, -1 error. */
static int any_reached(PyObject *ours, int at_or_below, int64_t price) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(ours, &pos, &key, &value)) {
        long long p = PyLong_AsLongLong(key);
        if (p == -1 && PyErr_Occurred()) return -1;
        if (at_or_below ? p <= price : p >= price) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ the reference's handlers */

/* venue._rest: a recorded order rests; does it cross one of ours? */
static int rest(Core *c, int32_t sid, uint64_t ref, int is_buy, int64_t price, int64_t shares) {
    c->adds++;
    Entry *e = insert(c, ref);
    if (!e) return -1;
    e->sid = sid; e->is_buy = (uint8_t)is_buy; e->price = price; e->shares = shares; e->added = c->adds;
    PyObject *adds = PyLong_FromUnsignedLongLong(c->adds);
    if (!adds) return -1;
    int r = PyObject_SetAttr(c->venue, s_adds, adds);
    Py_DECREF(adds);
    if (r < 0) return -1;
    PyObject *key = PyLong_FromLongLong(price);
    if (!key) return -1;
    PyObject *levels = c->levels[sid * 2 + is_buy];
    int64_t level;
    if (dict_get(levels, key, &level) < 0 || dict_set(levels, key, level + shares) < 0) { Py_DECREF(key); return -1; }
    Py_ssize_t side = sid * 2 + is_buy;
    if (c->best_known[side] && (PyDict_GET_SIZE(levels) == 1 || (is_buy ? price > c->best[side] : price < c->best[side])))
        c->best[side] = price;                           /* a better level, or the side's first */
    PyObject *opposite = c->ours[sid * 2 + !is_buy];
    int crossed = PyDict_GET_SIZE(opposite) ? any_reached(opposite, is_buy, price) : 0;   /* a buy crosses ours <= it */
    if (crossed < 0) { Py_DECREF(key); return -1; }
    if (crossed) {
        PyObject *res = PyObject_CallMethod(c->venue, "_crossed_by_add", "OOOOL", book_of(c, sid), opposite,
                                            is_buy ? Py_True : Py_False, key, (long long)shares);
        Py_DECREF(key);
        if (!res) return -1;
        Py_DECREF(res);
        return 0;
    }
    Py_DECREF(key);
    return 0;
}

/* venue._reduce: n shares off a recorded order and its level; the level's shares after in *after */
static int reduce(Core *c, Entry *e, int64_t n, PyObject *key, int64_t *after_out) {
    int32_t sid = e->sid;
    int is_buy = e->is_buy;
    int64_t e_price = e->price;                          /* e may be erased below */
    e->shares -= n;
    if (e->shares <= 0) erase(c, e);
    PyObject *levels = c->levels[sid * 2 + is_buy];
    int64_t level;
    if (dict_get(levels, key, &level) < 0) return -1;
    int64_t after = level - n;
    if (after > 0) {
        if (dict_set(levels, key, after) < 0) return -1;
    } else {
        if (dict_del(levels, key) < 0) return -1;
        after = 0;
        if (c->best[sid * 2 + is_buy] == e_price) c->best_known[sid * 2 + is_buy] = 0;   /* the best level went */
    }
    PyObject *taken = c->taken[sid * 2 + is_buy];
    if (PyDict_GET_SIZE(taken)) {
        PyObject *t = PyDict_GetItemWithError(taken, key);
        if (!t && PyErr_Occurred()) return -1;
        if (t) {
            long long tv = PyLong_AsLongLong(t);
            if (tv == -1 && PyErr_Occurred()) return -1;
            if (tv > after) {
                if (after) { if (dict_set(taken, key, after) < 0) return -1; }
                else if (PyDict_DelItem(taken, key) < 0) return -1;
            }
        }
    }
    *after_out = after;
    return 0;
}

/* venue._canceled */
static int canceled(Core *c, Entry *e, int64_t n) {
    int32_t sid = e->sid;
    int is_buy = e->is_buy;
    int64_t price = e->price;
    uint64_t added = e->added;
    PyObject *key = PyLong_FromLongLong(price);
    if (!key) return -1;
    int64_t after;
    if (reduce(c, e, n, key, &after) < 0) { Py_DECREF(key); return -1; }
    PyObject *ours = c->ours[sid * 2 + is_buy];
    if (PyDict_GET_SIZE(ours)) {
        PyObject *mine = PyDict_GetItemWithError(ours, key);
        if (!mine && PyErr_Occurred()) { Py_DECREF(key); return -1; }
        if (mine && PyObject_IsTrue(mine) == 1) {
            PyObject *res = PyObject_CallMethod(c->venue, "_cancel_at", "OLLK", mine, (long long)n, (long long)after,
                                                (unsigned long long)added);
            Py_DECREF(key);
            if (!res) return -1;
            Py_DECREF(res);
            return 0;
        }
    }
    Py_DECREF(key);
    return 0;
}

static int traded(Core *c, int32_t sid, int is_buy, int64_t price, int64_t n) {
    /* resting bids are reached at the price or above it (traded through), asks at it or below */
    int reached = any_reached(c->ours[sid * 2 + is_buy], !is_buy, price);
    if (reached <= 0) return reached;
    PyObject *res = PyObject_CallMethod(c->venue, "_traded", "OOLL", book_of(c, sid), is_buy ? Py_True : Py_False,
                                        (long long)price, (long long)n);
    if (!res) return -1;
    Py_DECREF(res);
    return 0;
}

static int unknown(Core *c, PyObject *raw) {
    int64_t locate;
    if (get_i64(raw, 1, &locate) < 0) return -1;
    int32_t sid = sid_at(c, (Py_ssize_t)locate);
    if (sid == -2) return -1;
    if (sid < 0) c->unsubscribed++; else c->unknown_order++;
    return 0;
}

static int need(PyObject *raw, Py_ssize_t n) {
    if (PyTuple_GET_SIZE(raw) < n) {
        PyErr_Format(PyExc_ValueError, "a raw ITCH tuple of %zd fields, %zd expected", PyTuple_GET_SIZE(raw), n);
        return -1;
    }
    return 0;
}

static int on_add(Core *c, PyObject *raw) {              /* A, F */
    int64_t locate, shares, price;
    uint64_t ref;
    if (need(raw, 9) < 0 || get_i64(raw, 1, &locate) < 0) return -1;
    int32_t sid = sid_at(c, (Py_ssize_t)locate);
    if (sid == -2) return -1;
    if (sid < 0) { c->unsubscribed++; return 0; }
    if (get_u64(raw, 4, &ref) < 0 || get_i64(raw, 6, &shares) < 0 || get_i64(raw, 8, &price) < 0) return -1;
    if (find(c, ref)) { c->duplicate_add++; return 0; }
    if (shares <= 0) return 0;
    return rest(c, sid, ref, is_b(PyTuple_GET_ITEM(raw, 5)), price, shares);
}

static int on_executed(Core *c, PyObject *raw) {         /* E, C */
    uint64_t ref;
    int64_t shares;
    if (need(raw, 6) < 0 || get_u64(raw, 4, &ref) < 0) return -1;
    Entry *e = find(c, ref);
    if (!e) return unknown(c, raw);
    if (get_i64(raw, 5, &shares) < 0) return -1;
    int32_t sid = e->sid;
    int is_buy = e->is_buy;
    int64_t price = e->price;
    int64_t n = shares < e->shares ? shares : e->shares;
    PyObject *key = PyLong_FromLongLong(price);
    if (!key) return -1;
    int64_t after;
    int r = reduce(c, e, n, key, &after);
    Py_DECREF(key);
    if (r < 0) return -1;
    if (PyDict_GET_SIZE(c->ours[sid * 2 + is_buy])) return traded(c, sid, is_buy, price, n);
    return 0;
}

static int on_trade(Core *c, PyObject *raw) {            /* P */
    int64_t locate, shares, price;
    if (need(raw, 9) < 0 || get_i64(raw, 1, &locate) < 0) return -1;
    int32_t sid = sid_at(c, (Py_ssize_t)locate);
    if (sid == -2) return -1;
    if (sid < 0) { c->unsubscribed++; return 0; }
    int is_buy = is_b(PyTuple_GET_ITEM(raw, 5));
    if (!PyDict_GET_SIZE(c->ours[sid * 2 + is_buy])) return 0;
    if (get_i64(raw, 6, &shares) < 0 || get_i64(raw, 8, &price) < 0) return -1;
    if (shares > 0) return traded(c, sid, is_buy, price, shares);
    return 0;
}

static int on_cancel(Core *c, PyObject *raw) {           /* X */
    uint64_t ref;
    int64_t shares;
    if (need(raw, 6) < 0 || get_u64(raw, 4, &ref) < 0) return -1;
    Entry *e = find(c, ref);
    if (!e) return unknown(c, raw);
    if (get_i64(raw, 5, &shares) < 0) return -1;
    return canceled(c, e, shares < e->shares ? shares : e->shares);
}

static int on_delete(Core *c, PyObject *raw) {           /* D */
    uint64_t ref;
    if (need(raw, 5) < 0 || get_u64(raw, 4, &ref) < 0) return -1;
    Entry *e = find(c, ref);
    if (!e) return unknown(c, raw);
    return canceled(c, e, e->shares);
}

static int on_replace(Core *c, PyObject *raw) {          /* U */
    uint64_t ref, new_ref;
    int64_t shares, price;
    if (need(raw, 8) < 0 || get_u64(raw, 4, &ref) < 0) return -1;
    Entry *e = find(c, ref);
    if (!e) return unknown(c, raw);
    int32_t sid = e->sid;
    int is_buy = e->is_buy;
    if (canceled(c, e, e->shares) < 0) return -1;        /* e is gone after this */
    if (get_u64(raw, 5, &new_ref) < 0) return -1;
    if (find(c, new_ref)) { c->duplicate_add++; return 0; }
    if (get_i64(raw, 6, &shares) < 0 || get_i64(raw, 7, &price) < 0) return -1;
    if (shares > 0) return rest(c, sid, new_ref, is_buy, price, shares);
    return 0;
}

static int call_python(Core *c, PyObject *name, PyObject *raw) {
    PyObject *res = PyObject_CallMethodOneArg(c->venue, name, raw);
    if (!res) return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *Core_on_itch(Core *c, PyObject *raw) {
    if (!PyTuple_Check(raw) || PyTuple_GET_SIZE(raw) < 4) {
        PyErr_SetString(PyExc_TypeError, "on_itch expects a raw ITCH tuple");
        return NULL;
    }
    PyObject *ts_obj = PyTuple_GET_ITEM(raw, 3);
    long long ts = PyLong_AsLongLong(ts_obj);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    if (PySequence_Size(c->inbound) > 0) {                  /* our actions that arrive before it */
        PyObject *first = PySequence_GetItem(c->inbound, 0);
        if (!first) return NULL;
        PyObject *arrive_obj = PyTuple_Check(first) && PyTuple_GET_SIZE(first) ? PyTuple_GET_ITEM(first, 0) : NULL;
        long long arrive = arrive_obj ? PyLong_AsLongLong(arrive_obj) : -1;
        Py_DECREF(first);
        if (!arrive_obj) { PyErr_SetString(PyExc_TypeError, "an inbound action is not a tuple"); return NULL; }
        if (arrive == -1 && PyErr_Occurred()) return NULL;
        if (arrive < ts) {
            PyObject *res = PyObject_CallMethodObjArgs(c->venue, s_arrive, ts_obj, Py_False, NULL);
            if (!res) return NULL;
            Py_DECREF(res);
        }
    }
    if (PyObject_SetAttr(c->venue, s_now_ns, ts_obj) < 0) return NULL;
    c->messages++;
    PyObject *type = PyTuple_GET_ITEM(raw, 0);
    if (!PyBytes_Check(type) || PyBytes_GET_SIZE(type) < 1) {
        PyErr_SetString(PyExc_TypeError, "a raw ITCH tuple's type is not bytes");
        return NULL;
    }
    int r = 0;
    switch (PyBytes_AS_STRING(type)[0]) {
    case 'A': case 'F': r = on_add(c, raw); break;
    case 'E': case 'C': r = on_executed(c, raw); break;
    case 'X': r = on_cancel(c, raw); break;
    case 'D': r = on_delete(c, raw); break;
    case 'U': r = on_replace(c, raw); break;
    case 'P': r = on_trade(c, raw); break;
    case 'R': r = call_python(c, s_directory, raw); break;
    case 'H': r = call_python(c, s_trading_action, raw); break;
    default: break;
    }
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

/* The best recorded price of one side (bids: the highest, asks: the lowest), None when the side is empty:
 * ``max``/``min`` of ``book.levels[is_buy]`` as venue.best_price computes it (marks and markouts read it per
 * fill, entries per order). Kept as the levels change here (rest: a better price; reduce: the best level
 * gone, found again by one pass at the next call): the levels are this core's to change once it runs. */
static PyObject *Core_best(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "best(sid, is_buy)"); return NULL; }
    Py_ssize_t sid = PyLong_AsSsize_t(args[0]);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    int is_buy = PyObject_IsTrue(args[1]);
    if (is_buy < 0) return NULL;
    if (sid < 0 || sid >= c->nbooks) { PyErr_SetString(PyExc_IndexError, "no book of that sid"); return NULL; }
    Py_ssize_t side = sid * 2 + is_buy;
    PyObject *levels = c->levels[side];
    if (!PyDict_GET_SIZE(levels)) Py_RETURN_NONE;
    if (!c->best_known[side]) {                          /* one pass over the side, then kept as levels change */
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        int found = 0;
        long long best_price = 0;
        while (PyDict_Next(levels, &pos, &key, &value)) {
            long long p = PyLong_AsLongLong(key);
            if (p == -1 && PyErr_Occurred()) return NULL;
            if (!found || (is_buy ? p > best_price : p < best_price)) { found = 1; best_price = p; }
        }
        c->best[side] = best_price;
        c->best_known[side] = 1;
    }
    return PyLong_FromLongLong(c->best[side]);
}

/* ------------------------------------------------------------------ the rest of the interface */

static PyObject *Core_orders(Core *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (uint64_t i = 0; i <= c->mask; i++) {
        Entry *e = &c->table[i];
        if (!e->used) continue;
        PyObject *k = PyLong_FromUnsignedLongLong(e->ref);
        PyObject *v = Py_BuildValue("[OOLLK]", book_of(c, e->sid), e->is_buy ? Py_True : Py_False,
                                    (long long)e->price, (long long)e->shares, (unsigned long long)e->added);
        if (!k || !v || PyDict_SetItem(d, k, v) < 0) { Py_XDECREF(k); Py_XDECREF(v); Py_DECREF(d); return NULL; }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

static PyObject *Core_counts(Core *c, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sLsLsLsL}", "messages", (long long)c->messages, "unsubscribed", (long long)c->unsubscribed,
                         "unknown_order", (long long)c->unknown_order, "duplicate_add", (long long)c->duplicate_add);
}

static void clear_arrays(Core *c) {
    if (c->levels) {
        for (Py_ssize_t i = 0; i < 2 * c->nbooks; i++) {
            Py_XDECREF(c->levels[i]); Py_XDECREF(c->ours[i]); Py_XDECREF(c->taken[i]);
        }
    }
    PyMem_Free(c->levels); PyMem_Free(c->ours); PyMem_Free(c->taken);
    c->levels = c->ours = c->taken = NULL;
    PyMem_Free(c->best); PyMem_Free(c->best_known);
    c->best = NULL;
    c->best_known = NULL;
    c->nbooks = 0;
}

static int side_dicts(PyObject *book, PyObject *name, PyObject **out) {   /* book.<name>[True], [False] */
    PyObject *both = PyObject_GetAttr(book, name);
    if (!both) return -1;
    for (int is_buy = 0; is_buy < 2; is_buy++) {
        PyObject *d = PyObject_GetItem(both, is_buy ? Py_True : Py_False);
        if (!d) { Py_DECREF(both); return -1; }
        if (!PyDict_CheckExact(d)) {
            Py_DECREF(d); Py_DECREF(both);
            PyErr_SetString(PyExc_TypeError, "a book's levels, ours and taken must be dicts per side");
            return -1;
        }
        out[is_buy] = d;
    }
    Py_DECREF(both);
    return 0;
}

static int Core_init(Core *c, PyObject *args, PyObject *kwds) {
    PyObject *venue;
    if (!PyArg_ParseTuple(args, "O", &venue)) return -1;
    PyObject *books = PyObject_GetAttr(venue, s_books);
    PyObject *bol = books ? PyObject_GetAttr(venue, s_book_of_locate) : NULL;
    PyObject *inbound = bol ? PyObject_GetAttr(venue, s_inbound) : NULL;
    if (!inbound) { Py_XDECREF(books); Py_XDECREF(bol); return -1; }
    if (!PyList_CheckExact(books) || !PyList_CheckExact(bol) || PyList_GET_SIZE(bol) != 65536) {
        Py_DECREF(books); Py_DECREF(bol); Py_DECREF(inbound);
        PyErr_SetString(PyExc_TypeError, "the venue's books and _book_of_locate must be lists (65536 locates)");
        return -1;
    }
    clear_arrays(c);
    Py_XSETREF(c->venue, Py_NewRef(venue));
    Py_XSETREF(c->books, books);
    Py_XSETREF(c->book_of_locate, bol);
    Py_XSETREF(c->inbound, inbound);
    Py_ssize_t n = PyList_GET_SIZE(books);
    c->levels = PyMem_Calloc(2 * (size_t)n + 1, sizeof(PyObject *));
    c->ours = PyMem_Calloc(2 * (size_t)n + 1, sizeof(PyObject *));
    c->taken = PyMem_Calloc(2 * (size_t)n + 1, sizeof(PyObject *));
    c->best = PyMem_Calloc(2 * (size_t)n + 1, sizeof(long long));
    c->best_known = PyMem_Calloc(2 * (size_t)n + 1, 1);        /* all unknown: found at the first call */
    if (!c->levels || !c->ours || !c->taken || !c->best || !c->best_known) { PyErr_NoMemory(); return -1; }
    c->nbooks = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *book = PyList_GET_ITEM(books, i);
        if (side_dicts(book, s_levels, &c->levels[2 * i]) < 0 || side_dicts(book, s_ours, &c->ours[2 * i]) < 0 ||
            side_dicts(book, s_taken, &c->taken[2 * i]) < 0)
            return -1;
    }
    memset(c->loc_book, 0, sizeof c->loc_book);
    PyMem_Free(c->table);
    c->mask = (1 << 12) - 1;
    c->table = PyMem_Calloc(c->mask + 1, sizeof(Entry));
    if (!c->table) { PyErr_NoMemory(); return -1; }
    c->count = c->adds = 0;
    c->messages = c->unsubscribed = c->unknown_order = c->duplicate_add = 0;
    return 0;
}

static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->venue); Py_VISIT(c->books); Py_VISIT(c->book_of_locate); Py_VISIT(c->inbound);
    for (Py_ssize_t i = 0; c->levels && i < 2 * c->nbooks; i++) {
        Py_VISIT(c->levels[i]); Py_VISIT(c->ours[i]); Py_VISIT(c->taken[i]);
    }
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->venue); Py_CLEAR(c->books); Py_CLEAR(c->book_of_locate); Py_CLEAR(c->inbound);
    clear_arrays(c);
    return 0;
}

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    PyMem_Free(c->table);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Core_methods[] = {
    {"on_itch", (PyCFunction)Core_on_itch, METH_O, "One recorded message (a raw tuple), as ReplayVenue.on_itch."},
    {"orders", (PyCFunction)Core_orders, METH_NOARGS,
     "The recorded orders: {ref: [book, is_buy, price, shares, add sequence]} (a copy)."},
    {"best", (PyCFunction)(void (*)(void))Core_best, METH_FASTCALL,
     "best(sid, is_buy): the best recorded price of one side (bids the highest, asks the lowest) or None."},
    {"counts", (PyCFunction)Core_counts, METH_NOARGS, "The counters kept here: messages, unsubscribed, unknown_order, duplicate_add."},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.replay._venue_fast.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The recorded-book bookkeeping of a ReplayVenue (Core(venue)).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_venue_fast",
    "The replay venue's recorded-book bookkeeping (appliance/replay/venue.py is the reference).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__venue_fast(void) {
#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL
    INTERN(s_now_ns, "now_ns"); INTERN(s_adds, "_adds"); INTERN(s_arrive, "_arrive");
    INTERN(s_crossed, "_crossed_by_add"); INTERN(s_traded, "_traded"); INTERN(s_cancel_at, "_cancel_at");
    INTERN(s_directory, "_directory"); INTERN(s_trading_action, "_trading_action"); INTERN(s_sid, "sid");
    INTERN(s_levels, "levels"); INTERN(s_ours, "ours"); INTERN(s_taken, "taken"); INTERN(s_books, "books");
    INTERN(s_book_of_locate, "_book_of_locate"); INTERN(s_inbound, "_inbound");
#undef INTERN
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) { Py_DECREF(&CoreType); Py_DECREF(m); return NULL; }
    return m;
}
