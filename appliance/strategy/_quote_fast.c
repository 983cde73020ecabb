/* The reference market maker's quote step compiled: the desired bid and ask of one symbol from its
 * book's top (read from the BookUpdate slot itself, or given as a BookTop), the position and the open
 * shares that stay beside the quotes; and the decision whether a resting quote is replaced.
 *
 * appliance/strategy/market_maker.py holds the reference (desired_quotes, needs_requote) and wraps this
 * (QuoteStep); tests/strategy/test_strategy_quote_fast.py checks both agree on generated tops and on real
 * BookUpdate streams, quote by quote and intent by intent.
 *
 * The reference computes half-width, skew and the rounding to the tick in Python floats: this does the
 * same IEEE double operations in the same order, and floor division as CPython's float // does it. It
 * answers only where that is exact (prices and shares within u32, positions and open shares within 2**53,
 * intermediate prices within 2**50); elsewhere it returns None and the caller asks the reference.
 *
 * No copy of a layout: the constructor receives the BookUpdate fields it reads as (offset, size) from
 * the catalog, the BOOK_FLAG_* masks, and the quoting parameters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* No fused multiply-add may change a rounding: setup.py builds with -std=c11, where GCC does not contract
 * (-ffp-contract=off is its default in ISO C modes), and x86-64's baseline has no FMA anyway. */

#define EXACT_LIMIT 9007199254740992LL          /* 2**53 */
#define PRICE_LIMIT 1125899906842624.0          /* 2**50 */
#define U32_LIMIT 0xFFFFFFFFLL

typedef struct { Py_ssize_t off; int size; } Field;

enum { F_FLAGS, F_STATE, F_BID_LEVELS, F_ASK_LEVELS, F_BID_PRICE, F_BID_SHARES, F_ASK_PRICE, F_ASK_SHARES, N_FIELDS };

typedef struct {
    PyObject_HEAD
    Field fields[N_FIELDS];
    Py_ssize_t record_size;
    long long bad_mask, crossed_mask, halted_mask, trading_byte;
    PyTypeObject *quote_type;                   /* market_maker.Quote: a tuple subclass (price, shares) */
    long long tick, spread_ticks, size, lot, max_position, inventory_unit, threshold;
    double spread_bp, skew_ticks, widen_ticks;
    int microprice;
} QuoteStep;

/* CPython's float floor division (Objects/floatobject.c, _float_div_mod), for wx > 0. */
static double py_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) {
            mod += wx;
            div -= 1.0;
        }
    }
    double floordiv;
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5)
            floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

static uint64_t read_field(const unsigned char *p, int size) {
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--)
        v = (v << 8) | p[i];                    /* little-endian, as every record */
    return v;
}

/* An int within [lo, hi] into *out: 1; outside (or not an int): 0, no exception left set. */
static int small_int(PyObject *o, long long lo, long long hi, long long *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (overflow || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static PyObject *make_quote(QuoteStep *self, long long price, long long shares) {
    PyObject *q = self->quote_type->tp_alloc(self->quote_type, 2);
    if (q == NULL)
        return NULL;
    PyObject *p = PyLong_FromLongLong(price), *s = PyLong_FromLongLong(shares);
    if (p == NULL || s == NULL) {
        Py_XDECREF(p);
        Py_XDECREF(s);
        Py_DECREF(q);
        return NULL;
    }
    PyTuple_SET_ITEM(q, 0, p);
    PyTuple_SET_ITEM(q, 1, s);
    return q;
}

/* desired_quotes on plain values, as numbers: 1 done (a side's size 0: no quote there), 0 beyond exact (the
 * reference answers). */
typedef struct { long long bid_price, bid_size, ask_price, ask_size; } Desired;

static int desire_values(QuoteStep *self, long long bid, long long bid_shares, long long ask, long long ask_shares,
                         int pulled, long long position, long long open_buys, long long open_sells, Desired *d) {
    d->bid_price = d->bid_size = d->ask_price = d->ask_size = 0;
    if (pulled || !(bid && ask && bid_shares && ask_shares))
        return 1;
    long long tick = self->tick;
    long long fair;
    if (self->microprice)
        fair = (long long)(((__int128)bid * ask_shares + (__int128)ask * bid_shares) / (bid_shares + ask_shares));
    else
        fair = (bid + ask) / 2;
    long long width = self->spread_ticks * tick;
    if (self->spread_bp != 0.0) {
        long long scaled = (long long)((double)fair * self->spread_bp);      /* int(): toward zero, >= 0 */
        long long bp_width = (scaled + 9999) / 10000;                       /* ceil, price units */
        long long rounded = (bp_width + tick - 1) / tick * tick;
        if (rounded > width)
            width = rounded;
    }
    double half = (double)width / 2.0;
    double shift = 0.0;
    if (position) {
        double units = (double)position / (double)self->inventory_unit;
        half += self->widen_ticks * fabs(units) * (double)tick;
        shift = -self->skew_ticks * units * (double)tick;
    }
    double low = (double)fair + shift - half, high = (double)fair + shift + half;
    if (!(fabs(low) <= PRICE_LIMIT && fabs(high) <= PRICE_LIMIT))
        return 0;                                /* beyond exact: the reference answers */
    long long bid_price = (long long)py_floordiv(low, (double)tick) * tick;
    long long ask_price = (long long)(-py_floordiv(-high, (double)tick)) * tick;
    if (bid_price > ask - tick)
        bid_price = ask - tick;                  /* post only: never take */
    if (ask_price < bid + tick)
        ask_price = bid + tick;
    long long lot = self->lot, size = self->size;
    long long bid_room = self->max_position - position - open_buys;
    long long ask_room = self->max_position + position - open_sells;
    long long bid_size = bid_room > 0 ? (size < bid_room ? size : bid_room) / lot * lot : 0;
    long long ask_size = ask_room > 0 ? (size < ask_room ? size : ask_room) / lot * lot : 0;
    if (bid_size > 0 && bid_price > 0) {
        d->bid_price = bid_price;
        d->bid_size = bid_size;
    }
    if (ask_size > 0 && ask_price > 0) {
        d->ask_price = ask_price;
        d->ask_size = ask_size;
    }
    return 1;
}

/* desired_quotes on plain values: (bid, ask), each a Quote or None; None when the reference must answer. */
static PyObject *desire(QuoteStep *self, long long bid, long long bid_shares, long long ask, long long ask_shares,
                        int pulled, long long position, long long open_buys, long long open_sells) {
    Desired d;
    if (!desire_values(self, bid, bid_shares, ask, ask_shares, pulled, position, open_buys, open_sells, &d))
        Py_RETURN_NONE;
    PyObject *b = Py_None, *a = Py_None;
    if (d.bid_size && (b = make_quote(self, d.bid_price, d.bid_size)) == NULL)
        return NULL;
    if (d.ask_size && (a = make_quote(self, d.ask_price, d.ask_size)) == NULL) {
        if (b != Py_None)
            Py_DECREF(b);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, b, a);
    if (b != Py_None)
        Py_DECREF(b);
    if (a != Py_None)
        Py_DECREF(a);
    return result;
}

static int read_top(QuoteStep *self, PyObject *src, PyObject *at_obj, long long *bid_out, long long *bid_shares_out,
                    long long *ask_out, long long *ask_shares_out, int *pulled_out);

static int book_args(PyObject *const *args, long long *position, long long *open_buys, long long *open_sells) {
    return small_int(args[0], -EXACT_LIMIT, EXACT_LIMIT, position) &&
           small_int(args[1], 0, EXACT_LIMIT, open_buys) && small_int(args[2], 0, EXACT_LIMIT, open_sells);
}

static PyObject *QuoteStep_desired_at(QuoteStep *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "desired_at(src, at, position, open_buys, open_sells)");
        return NULL;
    }
    long long position, open_buys, open_sells;
    if (!book_args(args + 2, &position, &open_buys, &open_sells)) {
        if (PyLong_AsSsize_t(args[1]) == -1 && PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    long long bid, bid_shares, ask, ask_shares;
    int pulled;
    if (read_top(self, args[0], args[1], &bid, &bid_shares, &ask, &ask_shares, &pulled) < 0)
        return NULL;
    return desire(self, bid, bid_shares, ask, ask_shares, pulled, position, open_buys, open_sells);
}

/* The top of the BookUpdate at src[at:]: prices and shares (0 for an empty side) and whether it is pulled
 * (bad, crossed, halted, not trading). -1 on error. */
static int read_top(QuoteStep *self, PyObject *src, PyObject *at_obj, long long *bid_out, long long *bid_shares_out,
                    long long *ask_out, long long *ask_shares_out, int *pulled_out) {
    Py_ssize_t at = PyLong_AsSsize_t(at_obj);
    if (at == -1 && PyErr_Occurred())
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(src, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (at < 0 || at > view.len - self->record_size) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a BookUpdate at %zd does not fit a buffer of %zd bytes", at, view.len);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)view.buf + at;
    uint64_t v[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++)
        v[i] = read_field(p + self->fields[i].off, self->fields[i].size);
    PyBuffer_Release(&view);
    long long flags = (long long)v[F_FLAGS];
    long long bid = 0, bid_shares = 0, ask = 0, ask_shares = 0;
    if (v[F_BID_LEVELS]) {
        bid = (long long)v[F_BID_PRICE];
        bid_shares = (long long)v[F_BID_SHARES];
    }
    if (v[F_ASK_LEVELS]) {
        ask = (long long)v[F_ASK_PRICE];
        ask_shares = (long long)v[F_ASK_SHARES];
    }
    *pulled_out = (flags & self->bad_mask) || (flags & self->crossed_mask) || (flags & self->halted_mask) ||
                  (long long)v[F_STATE] != self->trading_byte;
    *bid_out = bid;
    *bid_shares_out = bid_shares;
    *ask_out = ask;
    *ask_shares_out = ask_shares;
    return 0;
}

static PyObject *QuoteStep_desired(QuoteStep *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "desired(top, position, open_buys, open_sells)");
        return NULL;
    }
    PyObject *top = PySequence_Fast(args[0], "top must be a BookTop (a 7-tuple)");
    if (top == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(top) != 7) {
        Py_DECREF(top);
        PyErr_SetString(PyExc_TypeError, "top must be a BookTop (a 7-tuple)");
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(top);
    long long values[4];
    int pulled = 0, exact = 1;
    for (int i = 0; i < 4; i++)
        exact = exact && small_int(items[i], 0, U32_LIMIT, &values[i]);
    for (int i = 4; i < 7 && exact; i++) {
        int truth = PyObject_IsTrue(items[i]);
        if (truth < 0) {
            Py_DECREF(top);
            return NULL;
        }
        pulled |= truth;
    }
    Py_DECREF(top);
    long long position, open_buys, open_sells;
    if (!exact || !book_args(args + 1, &position, &open_buys, &open_sells))
        Py_RETURN_NONE;
    return desire(self, values[0], values[1], values[2], values[3], pulled, position, open_buys, open_sells);
}

static PyObject *QuoteStep_needs_requote(QuoteStep *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "needs_requote(resting_price, resting_leaves, desired)");
        return NULL;
    }
    if (!PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != 2) {
        PyErr_SetString(PyExc_TypeError, "desired must be a Quote (price, shares)");
        return NULL;
    }
    long long price, leaves, desired_price, desired_shares;
    if (!small_int(args[0], -EXACT_LIMIT, EXACT_LIMIT, &price) || !small_int(args[1], -EXACT_LIMIT, EXACT_LIMIT, &leaves) ||
        !small_int(PyTuple_GET_ITEM(args[2], 0), -EXACT_LIMIT, EXACT_LIMIT, &desired_price) ||
        !small_int(PyTuple_GET_ITEM(args[2], 1), -EXACT_LIMIT, EXACT_LIMIT, &desired_shares))
        Py_RETURN_NONE;
    long long moved = desired_price - price;
    if (moved < 0)
        moved = -moved;
    if (moved > self->threshold * self->tick || leaves > desired_shares)
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* ---- quiet: would MarketMaker._requote leave both quotes as they are? */

static PyObject *s_state, *s_price, *s_leaves, *s_replaced_by;
static long long st_live = -1, st_pending_cancel = -1, st_pending_replace = -1;     /* configure_states */

typedef struct { long long state, price, leaves; int replacing; } Resting;

/* One of our quotes, from the strategy's Order (its slots): 1 read, 0 beyond exact, -1 error. */
static int read_order(PyObject *o, Resting *r) {
    PyObject *v = PyObject_GetAttr(o, s_state);
    if (v == NULL)
        return -1;
    int ok = small_int(v, 0, 255, &r->state);
    Py_DECREF(v);
    if (!ok || (v = PyObject_GetAttr(o, s_price)) == NULL)
        return ok ? -1 : 0;
    ok = small_int(v, -EXACT_LIMIT, EXACT_LIMIT, &r->price);
    Py_DECREF(v);
    if (!ok || (v = PyObject_GetAttr(o, s_leaves)) == NULL)
        return ok ? -1 : 0;
    ok = small_int(v, -EXACT_LIMIT, EXACT_LIMIT, &r->leaves);
    Py_DECREF(v);
    if (!ok || (v = PyObject_GetAttr(o, s_replaced_by)) == NULL)
        return ok ? -1 : 0;
    r->replacing = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r->replacing < 0 ? -1 : 1;
}

/* MarketMaker._manage does nothing for this side (no send, replace or cancel): the order (NULL: none) and
 * the desired quote (size 0: None), as _manage decides, with needs_requote as QuoteStep_needs_requote. */
static int manage_quiet(QuoteStep *self, const Resting *o, long long d_price, long long d_size, int cooling,
                        int may_cancel) {
    if (o == NULL)
        return d_size == 0 || cooling;
    if (d_size == 0)
        return !(o->state != st_pending_cancel && may_cancel);
    if (o->state != st_live)
        return 1;
    long long moved = d_price - o->price;
    if (moved < 0)
        moved = -moved;
    if (!(moved > self->threshold * self->tick || o->leaves > d_size))
        return 1;
    if (cooling)
        return !(o->leaves > d_size && may_cancel);
    return 0;
}

static PyObject *QuoteStep_quiet(QuoteStep *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "quiet(src, at, position, bid, ask, cooling, may_cancel)");
        return NULL;
    }
    if (st_live < 0) {
        PyErr_SetString(PyExc_RuntimeError, "configure_states() first");
        return NULL;
    }
    long long position;
    if (!small_int(args[2], -EXACT_LIMIT, EXACT_LIMIT, &position))
        Py_RETURN_FALSE;
    int cooling = PyObject_IsTrue(args[5]), may_cancel = PyObject_IsTrue(args[6]);
    if (cooling < 0 || may_cancel < 0)
        return NULL;
    Resting orders[2];
    const Resting *side[2] = {NULL, NULL};                 /* bid, ask */
    for (int i = 0; i < 2; i++) {
        if (args[3 + i] == Py_None)
            continue;
        int r = read_order(args[3 + i], &orders[i]);
        if (r < 0)
            return NULL;
        if (r == 0 || orders[i].replacing)                 /* a pending replace: _lowest/_highest read its successor */
            Py_RETURN_FALSE;
        side[i] = &orders[i];
    }
    long long bid, bid_shares, ask, ask_shares;
    int pulled;
    if (read_top(self, args[0], args[1], &bid, &bid_shares, &ask, &ask_shares, &pulled) < 0)
        return NULL;
    Desired d;
    if (!desire_values(self, bid, bid_shares, ask, ask_shares, pulled, position, 0, 0, &d))
        Py_RETURN_FALSE;
    /* _lowest(ask) / _highest(bid): an open order's own price (no successor here), else none */
    const Resting *b = side[0], *a = side[1];
    int ask_open = a != NULL && a->state <= st_pending_replace, bid_open = b != NULL && b->state <= st_pending_replace;
    int hold_bid = d.bid_size && ask_open && d.bid_price >= a->price;
    int hold_ask = d.ask_size && (bid_open ? d.ask_price <= b->price : d.ask_price <= 0);
    if ((hold_bid || manage_quiet(self, b, d.bid_price, d.bid_size, cooling, may_cancel)) &&
        (hold_ask || manage_quiet(self, a, d.ask_price, d.ask_size, cooling, may_cancel)))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyObject *configure_states(PyObject *module, PyObject *args) {
    long long live, pending_cancel, pending_replace;
    if (!PyArg_ParseTuple(args, "LLL", &live, &pending_cancel, &pending_replace))
        return NULL;
    st_live = live;
    st_pending_cancel = pending_cancel;
    st_pending_replace = pending_replace;
    Py_RETURN_NONE;
}

static int get_ll(PyObject *o, const char *name, long long lo, long long hi, long long *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s must be %lld..%lld", name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_double(PyObject *o, const char *name, double *out) {
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (!isfinite(v) || v < 0 || v > 1e9) {
        PyErr_Format(PyExc_ValueError, "%s must be a finite number 0..1e9", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int QuoteStep_init(QuoteStep *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fields", "record_size", "bad_mask", "crossed_mask", "halted_mask", "trading_byte",
                             "quote_type", "tick", "spread_ticks", "spread_bp", "size", "lot", "max_position",
                             "inventory_unit", "skew_ticks", "widen_ticks", "requote_threshold_ticks", "microprice",
                             NULL};
    PyObject *fields, *quote_type, *tick, *spread_ticks, *spread_bp, *size, *lot, *max_position, *inventory_unit,
        *skew, *widen, *threshold;
    Py_ssize_t record_size;
    long long bad, crossed, halted, trading;
    int microprice;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nLLLLO!OOOOOOOOOOp", kwlist, &PyTuple_Type, &fields,
                                     &record_size, &bad, &crossed, &halted, &trading, &PyType_Type, &quote_type,
                                     &tick, &spread_ticks, &spread_bp, &size, &lot, &max_position, &inventory_unit,
                                     &skew, &widen, &threshold, &microprice))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)quote_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "quote_type must be a tuple subclass (price, shares)");
        return -1;
    }
    if (PyTuple_GET_SIZE(fields) != N_FIELDS) {
        PyErr_Format(PyExc_ValueError, "fields: %d (offset, size) pairs expected", N_FIELDS);
        return -1;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        Py_ssize_t off;
        int fsize;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "ni", &off, &fsize))
            return -1;
        if (off < 0 || (fsize != 1 && fsize != 2 && fsize != 4 && fsize != 8) || off + fsize > record_size) {
            PyErr_Format(PyExc_ValueError, "field %d: (%zd, %d) does not fit a record of %zd bytes", i, off, fsize,
                         record_size);
            return -1;
        }
        self->fields[i].off = off;
        self->fields[i].size = fsize;
    }
    if (self->fields[F_BID_PRICE].size > 4 || self->fields[F_ASK_PRICE].size > 4 ||
        self->fields[F_BID_SHARES].size > 4 || self->fields[F_ASK_SHARES].size > 4) {
        PyErr_SetString(PyExc_ValueError, "prices and shares of at most 4 bytes expected");
        return -1;
    }
    self->record_size = record_size;
    self->bad_mask = bad;
    self->crossed_mask = crossed;
    self->halted_mask = halted;
    self->trading_byte = trading;
    if (get_ll(tick, "tick", 1, U32_LIMIT, &self->tick) < 0 ||
        get_ll(spread_ticks, "spread_ticks", 1, 1000000, &self->spread_ticks) < 0 ||
        get_double(spread_bp, "spread_bp", &self->spread_bp) < 0 ||
        get_ll(size, "size", 1, U32_LIMIT, &self->size) < 0 || get_ll(lot, "lot", 1, U32_LIMIT, &self->lot) < 0 ||
        get_ll(max_position, "max_position", 1, U32_LIMIT, &self->max_position) < 0 ||
        get_ll(inventory_unit, "inventory_unit", 1, U32_LIMIT, &self->inventory_unit) < 0 ||
        get_double(skew, "skew_ticks", &self->skew_ticks) < 0 || get_double(widen, "widen_ticks", &self->widen_ticks) < 0 ||
        get_ll(threshold, "requote_threshold_ticks", 0, 1000000, &self->threshold) < 0)
        return -1;
    if (self->spread_bp > 10000) {
        PyErr_SetString(PyExc_ValueError, "spread_bp must be at most 10000");
        return -1;
    }
    Py_INCREF(quote_type);
    Py_XSETREF(self->quote_type, (PyTypeObject *)quote_type);
    self->microprice = microprice;
    return 0;
}

static void QuoteStep_dealloc(QuoteStep *self) {
    Py_XDECREF(self->quote_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef QuoteStep_methods[] = {
    {"desired_at", (PyCFunction)(void (*)(void))QuoteStep_desired_at, METH_FASTCALL,
     "desired_at(src, at, position, open_buys, open_sells) -> (bid, ask) from the BookUpdate at src[at:]; None: "
     "ask the reference"},
    {"desired", (PyCFunction)(void (*)(void))QuoteStep_desired, METH_FASTCALL,
     "desired(top, position, open_buys, open_sells) -> (bid, ask) from a BookTop; None: ask the reference"},
    {"needs_requote", (PyCFunction)(void (*)(void))QuoteStep_needs_requote, METH_FASTCALL,
     "needs_requote(resting_price, resting_leaves, desired) -> bool; None: ask the reference"},
    {"quiet", (PyCFunction)(void (*)(void))QuoteStep_quiet, METH_FASTCALL,
     "quiet(src, at, position, bid, ask, cooling, may_cancel) -> True when MarketMaker._requote would send, replace "
     "and cancel nothing for these two quotes (no other open order of the symbol); False: let it decide"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject QuoteStepType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.strategy._quote_fast.QuoteStep",
    .tp_basicsize = sizeof(QuoteStep),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One symbol's compiled quote step (market_maker.QuoteStep builds it from QuoteParams).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)QuoteStep_init,
    .tp_dealloc = (destructor)QuoteStep_dealloc,
    .tp_methods = QuoteStep_methods,
};

static PyMethodDef module_methods[] = {
    {"configure_states", configure_states, METH_VARARGS,
     "configure_states(live, pending_cancel, pending_replace): the OrderState values quiet() compares with"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_quote_fast",
    "The reference market maker's quote step compiled (market_maker.desired_quotes is the reference).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__quote_fast(void) {
    if (!(s_state = PyUnicode_InternFromString("_state")) || !(s_price = PyUnicode_InternFromString("_price")) ||
        !(s_leaves = PyUnicode_InternFromString("_leaves")) ||
        !(s_replaced_by = PyUnicode_InternFromString("_replaced_by")))
        return NULL;
    if (PyType_Ready(&QuoteStepType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&QuoteStepType);
    if (PyModule_AddObject(m, "QuoteStep", (PyObject *)&QuoteStepType) < 0) {
        Py_DECREF(&QuoteStepType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
