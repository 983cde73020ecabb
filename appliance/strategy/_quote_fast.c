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

/* desired_quotes on plain values: (bid, ask), each a Quote or None; None when the reference must answer. */
static PyObject *desire(QuoteStep *self, long long bid, long long bid_shares, long long ask, long long ask_shares,
                        int pulled, long long position, long long open_buys, long long open_sells) {
    if (pulled || !(bid && ask && bid_shares && ask_shares))
        return PyTuple_Pack(2, Py_None, Py_None);
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
        Py_RETURN_NONE;                          /* beyond exact: the reference answers */
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
    PyObject *b = Py_None, *a = Py_None;
    if (bid_size > 0 && bid_price > 0 && (b = make_quote(self, bid_price, bid_size)) == NULL)
        return NULL;
    if (ask_size > 0 && ask_price > 0 && (a = make_quote(self, ask_price, ask_size)) == NULL) {
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

static int book_args(PyObject *const *args, long long *position, long long *open_buys, long long *open_sells) {
    return small_int(args[0], -EXACT_LIMIT, EXACT_LIMIT, position) &&
           small_int(args[1], 0, EXACT_LIMIT, open_buys) && small_int(args[2], 0, EXACT_LIMIT, open_sells);
}

static PyObject *QuoteStep_desired_at(QuoteStep *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "desired_at(src, at, position, open_buys, open_sells)");
        return NULL;
    }
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    long long position, open_buys, open_sells;
    if (!book_args(args + 2, &position, &open_buys, &open_sells))
        Py_RETURN_NONE;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (at < 0 || at > view.len - self->record_size) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a BookUpdate at %zd does not fit a buffer of %zd bytes", at, view.len);
        return NULL;
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
    int pulled = (flags & self->bad_mask) || (flags & self->crossed_mask) || (flags & self->halted_mask) ||
                 (long long)v[F_STATE] != self->trading_byte;
    return desire(self, bid, bid_shares, ask, ask_shares, pulled, position, open_buys, open_sells);
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_quote_fast",
    "The reference market maker's quote step compiled (market_maker.desired_quotes is the reference).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__quote_fast(void) {
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
