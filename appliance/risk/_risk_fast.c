/* The compiled check set: RiskEngine.check (appliance/risk/checks.py) for the common case, reading the
 * engine's own state. appliance.risk.fast wraps it; checks.py stays the reference and the fallback, and
 * tests/risk/test_risk_fast_diff.py checks both decide alike, intent by intent.
 *
 * Design: no copy of any state. A FastCheck holds one RiskEngine and, on every call, reads the engine's,
 * its Portfolio's, its open orders' and its sliding windows' __slots__ directly (the slot offsets come
 * from the classes' member descriptors at configure(); each call checks the objects' exact types, so a
 * changed class falls back instead of misreading), the client-id set and order dicts with the same
 * Python objects the reference uses, and the market-state slot under its seqlock. A limits reload, a
 * snapshot rebuild or a kill needs no sync step: the next call reads what the engine holds then.
 *
 * Only pure decisions are taken here. Whenever the reference would change state while checking
 * (MESSAGE_RATE counts the throttle, a loss limit latches the kill switch, a new P&L peak moves the
 * floor, the market-hours answer expires, a torn seqlock read is counted) or a value is not what the
 * common case holds (a number beyond 64 bits, a negative symbol id, shares or price, keyword
 * arguments, another type), the call returns engine.check(...) itself: the reference decides, with
 * its side effects. So the kill switch, the gate and every fail-closed rule stay the reference's.
 *
 * Every constant (reason codes, actions, sides, flags, the MarketState field offsets) comes from
 * the Python tables through configure(); none is repeated here. Arithmetic on money is __int128,
 * as exact as Python's ints for 64-bit inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef __int128 i128;
typedef long long ll;
typedef struct { int16_t off; int16_t size; } Field;

/* ---------------------------------------------------------------- configuration (from the Python tables) */

static int configured = 0;
static PyTypeObject *engine_type, *portfolio_type, *order_type, *window_type;
static PyObject *min_quantity_problem;          /* appliance.wire.ouch.minimum_quantity_problem */

enum {
    E_SYMBOL_COUNT, E_SYMBOL_ROWS, E_READY, E_CONTROL, E_MARKET_HOURS, E_HOURS_UNTIL, E_HOURS_FROM, E_HOURS_OPEN,
    E_SEEN, E_PORTFOLIO, E_GLOBAL_ROW, E_FLAG_RULES, E_RATE, E_IDENTICAL, E_MS_BUFFER, E_MS_SEQ, E_PEAK,
    E_LOSS_FLOOR, E_MAX_GROSS, E_COUNT
};
static const char *engine_slots[E_COUNT] = {
    "symbol_count", "symbol_rows", "ready", "control", "market_hours", "hours_valid_until_ns",
    "hours_valid_from_ns", "hours_open", "seen_client_ids", "portfolio", "global_row", "flag_rules", "rate",
    "identical", "_ms_buffer", "_ms_seq_offsets", "peak_pnl", "loss_floor", "max_gross"};
enum {
    P_ORDERS, P_OPEN_COUNT, P_OWN_BID, P_OWN_ASK, P_POSITION, P_OPEN_BUY, P_OPEN_SELL, P_LONG_TOTAL, P_SHORT_TOTAL,
    P_LONG_NOTIONAL, P_SHORT_NOTIONAL, P_GROSS_NOTIONAL, P_GROSS_TOTAL, P_SECTOR_GROSS, P_REALIZED_TOTAL,
    P_UNREALIZED_TOTAL, P_COUNT
};
static const char *portfolio_slots[P_COUNT] = {
    "orders", "open_count", "own_bid", "own_ask", "position", "open_buy", "open_sell", "long_total", "short_total",
    "long_notional", "short_notional", "gross_notional", "gross_total", "sector_gross", "realized_total",
    "unrealized_total"};
enum { O_REPLACEMENT_ID, O_SYMBOL_ID, O_BUY, O_WORST, O_COUNT };
static const char *order_slots[O_COUNT] = {"replacement_id", "symbol_id", "buy", "worst"};
enum { W_TIMES, W_NEXT_INDEX, W_WINDOW_NS, W_COUNT };
static const char *window_slots[W_COUNT] = {"times", "next_index", "window_ns"};
static Py_ssize_t engine_off[E_COUNT], portfolio_off[P_COUNT], order_off[O_COUNT], window_off[W_COUNT];

/* constants, by name from configure()'s dict */
enum {
    K_NEW, K_REPLACE, K_CANCEL, K_CANCEL_ALL, K_SNAPSHOT, K_BUY, K_SELL, K_SELL_SHORT, K_TIF_DAY, K_TIF_IOC,
    K_MARKET_PRICE, K_NO_ASK, K_TRADING, K_HALTED, K_REDUCING, K_BAD_BOOK, K_NO_BOOK, K_BOOK_FLAG_HALTED,
    K_VISIBLE, K_AGENCY, K_HIDDEN, K_COUNT
};
static const char *constant_names[K_COUNT] = {
    "NEW", "REPLACE", "CANCEL", "CANCEL_ALL", "SNAPSHOT", "BUY", "SELL", "SELL_SHORT", "TIF_DAY", "TIF_IOC",
    "MARKET_PRICE", "NO_ASK", "TRADING", "HALTED", "REDUCING", "BAD_BOOK", "NO_BOOK", "BOOK_FLAG_HALTED",
    "VISIBLE", "AGENCY", "HIDDEN"};
static ll K[K_COUNT];

enum {
    R_BAD_ORDER, R_UNKNOWN_SYMBOL, R_NOT_READY, R_TRADING_HALTED, R_SYMBOL_KILLED, R_MARKET_CLOSED,
    R_DUPLICATE_CLIENT_ID, R_UNKNOWN_ORDER, R_MIN_SIZE, R_MAX_SHARES, R_ROUND_LOT, R_MARKET_ORDER, R_TICK,
    R_PRICE_BAND, R_SHORT_SALE, R_HIDDEN_ORDER, R_ISO_ORDER, R_MIN_QUANTITY, R_MESSAGE_RATE, R_MAX_OPEN_ORDERS,
    R_REPEATED_ORDER, R_SELF_MATCH, R_BOOK_STALE, R_SYMBOL_HALTED, R_BOOK_CROSSED, R_NO_REFERENCE_PRICE,
    R_PRICE_COLLAR, R_MAX_NOTIONAL, R_DAILY_LOSS, R_DRAWDOWN, R_TRADING_REDUCING, R_MAX_LONG, R_MAX_SHORT,
    R_GROSS_EXPOSURE, R_NET_EXPOSURE, R_SECTOR_CONCENTRATION, R_LEVERAGE, R_COUNT
};
static const char *reason_names[R_COUNT] = {
    "BAD_ORDER", "UNKNOWN_SYMBOL", "NOT_READY", "TRADING_HALTED", "SYMBOL_KILLED", "MARKET_CLOSED",
    "DUPLICATE_CLIENT_ID", "UNKNOWN_ORDER", "MIN_SIZE", "MAX_SHARES", "ROUND_LOT", "MARKET_ORDER", "TICK",
    "PRICE_BAND", "SHORT_SALE", "HIDDEN_ORDER", "ISO_ORDER", "MIN_QUANTITY", "MESSAGE_RATE", "MAX_OPEN_ORDERS",
    "REPEATED_ORDER", "SELF_MATCH", "BOOK_STALE", "SYMBOL_HALTED", "BOOK_CROSSED", "NO_REFERENCE_PRICE",
    "PRICE_COLLAR", "MAX_NOTIONAL", "DAILY_LOSS", "DRAWDOWN", "TRADING_REDUCING", "MAX_LONG", "MAX_SHORT",
    "GROSS_EXPOSURE", "NET_EXPOSURE", "SECTOR_CONCENTRATION", "LEVERAGE"};
static int reason_code[R_COUNT];

static uint8_t display_ok[256], capacity_ok[256];     /* codes.Display / Capacity values and 0 (the default) */

/* MarketState fields, offsets from the seqlock word (the reader's pointer), sizes checked */
enum { M_BID, M_ASK, M_LAST, M_FLAGS, M_STATE, M_COUNT };
static const char *market_fields[M_COUNT] = {"bid_price", "ask_price", "last_trade_price", "flags", "trading_state"};
static const int market_sizes[M_COUNT] = {4, 4, 4, 1, 1};
static Py_ssize_t market_off[M_COUNT];
static Py_ssize_t market_span;                 /* bytes from the seqlock word to the end of the last field read */

static PyObject *state_name;                   /* "state": TradingControl is a plain object (no slots) */

static int
slot_offsets(PyTypeObject *type, const char **names, int count, Py_ssize_t *out)
{
    for (int i = 0; i < count; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, names[i]);
        if (d == NULL)
            return -1;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok)
            out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ attribute", type->tp_name, names[i]);
            return -1;
        }
    }
    return 0;
}

static int
dict_ll(PyObject *dict, const char *name, ll *out)
{
    PyObject *v = PyDict_GetItemString(dict, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "configure: %s missing", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *types, *constants, *reasons, *displays, *capacities, *fields, *mqp;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO!O", &PyTuple_Type, &types, &PyDict_Type, &constants, &PyDict_Type,
                          &reasons, &displays, &capacities, &PyDict_Type, &fields, &mqp))
        return NULL;
    if (PyTuple_GET_SIZE(types) != 4) {
        PyErr_SetString(PyExc_ValueError, "configure: (RiskEngine, Portfolio, OpenOrder, SlidingWindow)");
        return NULL;
    }
    PyTypeObject *t[4];
    for (int i = 0; i < 4; i++) {
        PyObject *o = PyTuple_GET_ITEM(types, i);
        if (!PyType_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "configure: expected classes");
            return NULL;
        }
        t[i] = (PyTypeObject *)o;
    }
    if (slot_offsets(t[0], engine_slots, E_COUNT, engine_off) < 0 ||
        slot_offsets(t[1], portfolio_slots, P_COUNT, portfolio_off) < 0 ||
        slot_offsets(t[2], order_slots, O_COUNT, order_off) < 0 ||
        slot_offsets(t[3], window_slots, W_COUNT, window_off) < 0)
        return NULL;
    for (int i = 0; i < K_COUNT; i++)
        if (dict_ll(constants, constant_names[i], &K[i]) < 0)
            return NULL;
    for (int i = 0; i < R_COUNT; i++) {
        ll code;
        if (dict_ll(reasons, reason_names[i], &code) < 0)
            return NULL;
        if (code <= 0 || code > 255) {
            PyErr_Format(PyExc_ValueError, "configure: reason %s = %lld", reason_names[i], code);
            return NULL;
        }
        reason_code[i] = (int)code;
    }
    if (PyDict_Size(reasons) != R_COUNT) {
        PyErr_Format(PyExc_ValueError, "configure: %zd reasons, the compiled checks know %d",
                     PyDict_Size(reasons), R_COUNT);
        return NULL;
    }
    PyObject *sets[2] = {displays, capacities};
    uint8_t *tables[2] = {display_ok, capacity_ok};
    for (int k = 0; k < 2; k++) {
        memset(tables[k], 0, 256);
        PyObject *it = PyObject_GetIter(sets[k]), *item;
        if (it == NULL)
            return NULL;
        while ((item = PyIter_Next(it)) != NULL) {
            long v = PyLong_AsLong(item);
            Py_DECREF(item);
            if (v < 0 || v > 255) {
                Py_DECREF(it);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "configure: a display/capacity code is one byte");
                return NULL;
            }
            tables[k][v] = 1;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return NULL;
    }
    market_span = 0;
    for (int i = 0; i < M_COUNT; i++) {
        PyObject *v = PyDict_GetItemString(fields, market_fields[i]);
        Py_ssize_t off, size;
        if (v == NULL || !PyArg_ParseTuple(v, "nn", &off, &size)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_KeyError, "configure: MarketState.%s missing", market_fields[i]);
            return NULL;
        }
        if (size != market_sizes[i] || off < 8) {
            PyErr_Format(PyExc_ValueError, "configure: MarketState.%s at %zd, %zd bytes", market_fields[i], off, size);
            return NULL;
        }
        market_off[i] = off;
        if (off + size > market_span)
            market_span = off + size;
    }
    if (!PyCallable_Check(mqp)) {
        PyErr_SetString(PyExc_TypeError, "configure: minimum_quantity_problem must be callable");
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        Py_INCREF(t[i]);
    Py_XDECREF(engine_type); Py_XDECREF(portfolio_type); Py_XDECREF(order_type); Py_XDECREF(window_type);
    engine_type = t[0]; portfolio_type = t[1]; order_type = t[2]; window_type = t[3];
    Py_INCREF(mqp);
    Py_XSETREF(min_quantity_problem, mqp);
    configured = 1;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- reading the engine's objects */

#define FALLBACK (-1)
#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* a Python int that fits 64 bits (bools too); else -1 (the caller falls back) */
static inline int
as_ll(PyObject *o, ll *out)
{
    if (o == NULL || !PyLong_Check(o))
        return -1;
#if PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
    {   /* up to two 30-bit digits read in place (3.11's layout): what nearly every value here is */
        Py_ssize_t size = Py_SIZE(o);
        const digit *d = ((PyLongObject *)o)->ob_digit;
        if (size == 0) { *out = 0; return 0; }
        if (size == 1) { *out = (ll)d[0]; return 0; }
        if (size == -1) { *out = -(ll)d[0]; return 0; }
        if (size == 2) { *out = (ll)d[0] | ((ll)d[1] << PyLong_SHIFT); return 0; }
        if (size == -2) { *out = -((ll)d[0] | ((ll)d[1] << PyLong_SHIFT)); return 0; }
    }
#endif
    int overflow;
    ll v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    *out = v;
    return 0;
}

/* item i of a list of ints */
static inline int
list_ll(PyObject *list, Py_ssize_t i, ll *out)
{
    if (list == NULL || !PyList_CheckExact(list) || i < 0 || i >= PyList_GET_SIZE(list))
        return -1;
    return as_ll(PyList_GET_ITEM(list, i), out);
}

static inline int
truth(PyObject *o)
{
    if (o == Py_True)
        return 1;
    if (o == Py_False || o == Py_None)
        return 0;
    return o == NULL ? -1 : PyObject_IsTrue(o);
}

/* now - window.times[window.next_index] < window.window_ns (SlidingWindow.full); -1: not readable */
static inline int
window_full(PyObject *window, ll now)
{
    if (!Py_IS_TYPE(window, window_type))
        return -1;
    ll next_index, window_ns, oldest;
    if (as_ll(SLOT(window, window_off[W_NEXT_INDEX]), &next_index) < 0 ||
        as_ll(SLOT(window, window_off[W_WINDOW_NS]), &window_ns) < 0 ||
        list_ll(SLOT(window, window_off[W_TIMES]), next_index, &oldest) < 0)
        return -1;
    return (i128)now - oldest < window_ns;
}

/* ---------------------------------------------------------------- the check set */

enum { A_ACTION, A_CID, A_ORIG, A_SYMBOL, A_SIDE, A_SHARES, A_PRICE, A_TIF, A_NOW, A_DISPLAY, A_CAPACITY,
       A_MIN_QTY, A_ISO, A_MAX };

/* The reference's check, step by step (the numbers are checks.py's); returns a reason code, 0 to
 * approve, or FALLBACK. Never changes anything. */
static int
check_set(PyObject *engine, PyObject *const *args, Py_ssize_t nargs)
{
    ll a[A_MAX] = {0};
    for (Py_ssize_t i = 0; i < nargs; i++)
        if (as_ll(args[i], &a[i]) < 0)
            return FALLBACK;
    const ll action = a[A_ACTION], cid = a[A_CID], orig = a[A_ORIG], symbol_id = a[A_SYMBOL], side = a[A_SIDE];
    const ll shares = a[A_SHARES], now = a[A_NOW], display = a[A_DISPLAY], capacity = a[A_CAPACITY];
    const ll minimum_quantity = a[A_MIN_QTY], iso = a[A_ISO], tif = a[A_TIF];
    ll price = a[A_PRICE];
    if (action != K[K_NEW] && action != K[K_REPLACE])
        return (action == K[K_CANCEL] || action == K[K_CANCEL_ALL] || action == K[K_SNAPSHOT]) ? 0
               : reason_code[R_BAD_ORDER];
    /* 1. well-formed */
    if ((side != K[K_BUY] && side != K[K_SELL] && side != K[K_SELL_SHORT]) || !shares || !price || !cid ||
        (tif != K[K_TIF_DAY] && tif != K[K_TIF_IOC]))
        return reason_code[R_BAD_ORDER];
    if (symbol_id < 0 || shares < 0 || price < 0)
        return FALLBACK;                           /* Python's negative indexing and floor modulo */
    ll symbol_count;
    if (as_ll(SLOT(engine, engine_off[E_SYMBOL_COUNT]), &symbol_count) < 0)
        return FALLBACK;
    if (symbol_id >= symbol_count)
        return reason_code[R_UNKNOWN_SYMBOL];
    PyObject *rows = SLOT(engine, engine_off[E_SYMBOL_ROWS]);
    if (rows == NULL || !PyList_CheckExact(rows) || symbol_id >= PyList_GET_SIZE(rows))
        return FALLBACK;
    PyObject *row = PyList_GET_ITEM(rows, symbol_id);
    int ready = truth(SLOT(engine, engine_off[E_READY]));
    if (ready < 0)
        return FALLBACK;
    PyObject *control = SLOT(engine, engine_off[E_CONTROL]);
    if (control == NULL)
        return FALLBACK;
    if (row == Py_None)
        return reason_code[R_UNKNOWN_SYMBOL];
    if (!PyTuple_CheckExact(row))
        return FALLBACK;
    ll state;
    if (PyTuple_GET_SIZE(row) == 0) {              /* KILLED_ROW: the symbol's kill switch is latched */
        if (!ready)
            return reason_code[R_NOT_READY];
        PyObject *s = PyObject_GetAttr(control, state_name);
        int bad = as_ll(s, &state);
        Py_XDECREF(s);
        if (bad < 0) {
            PyErr_Clear();
            return FALLBACK;
        }
        return state == K[K_HALTED] ? reason_code[R_TRADING_HALTED] : reason_code[R_SYMBOL_KILLED];
    }
    if (PyTuple_GET_SIZE(row) != 14)
        return FALLBACK;
    /* 2. the gateway's own state */
    if (!ready)
        return reason_code[R_NOT_READY];
    {
        PyObject *s = PyObject_GetAttr(control, state_name);
        int bad = as_ll(s, &state);
        Py_XDECREF(s);
        if (bad < 0) {
            PyErr_Clear();
            return FALLBACK;
        }
    }
    if (state == K[K_HALTED])
        return reason_code[R_TRADING_HALTED];
    PyObject *hours = SLOT(engine, engine_off[E_MARKET_HOURS]);
    if (hours == NULL)
        return FALLBACK;
    if (hours != Py_None) {
        ll until, from;
        if (as_ll(SLOT(engine, engine_off[E_HOURS_UNTIL]), &until) < 0 ||
            as_ll(SLOT(engine, engine_off[E_HOURS_FROM]), &from) < 0)
            return FALLBACK;
        if (now >= until || now < from)
            return FALLBACK;                       /* the reference asks the calendar again */
        int open = truth(SLOT(engine, engine_off[E_HOURS_OPEN]));
        if (open < 0)
            return FALLBACK;
        if (!open)
            return reason_code[R_MARKET_CLOSED];
    }
    /* 3. duplicates and the order being replaced */
    PyObject *seen = SLOT(engine, engine_off[E_SEEN]);
    if (seen == NULL || !PyAnySet_CheckExact(seen))
        return FALLBACK;
    int dup = PySet_Contains(seen, args[A_CID]);
    if (dup < 0) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (dup)
        return reason_code[R_DUPLICATE_CLIENT_ID];
    PyObject *portfolio = SLOT(engine, engine_off[E_PORTFOLIO]);
    if (portfolio == NULL || !Py_IS_TYPE(portfolio, portfolio_type))
        return FALLBACK;
#define PF(name) SLOT(portfolio, portfolio_off[name])
    const int buy = side == K[K_BUY];
    ll added;
    if (action == K[K_REPLACE]) {
        PyObject *orders = PF(P_ORDERS);
        if (orders == NULL || !PyDict_CheckExact(orders))
            return FALLBACK;
        PyObject *order = PyDict_GetItemWithError(orders, args[A_ORIG]);
        if (order == NULL) {
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return FALLBACK;
            }
            return reason_code[R_UNKNOWN_ORDER];
        }
        if (!Py_IS_TYPE(order, order_type))
            return FALLBACK;
        int replacing = truth(SLOT(order, order_off[O_REPLACEMENT_ID]));
        int order_buy = truth(SLOT(order, order_off[O_BUY]));
        ll order_symbol, worst;
        if (replacing < 0 || order_buy < 0 || as_ll(SLOT(order, order_off[O_SYMBOL_ID]), &order_symbol) < 0 ||
            as_ll(SLOT(order, order_off[O_WORST]), &worst) < 0) {
            PyErr_Clear();
            return FALLBACK;
        }
        if (replacing)
            return reason_code[R_UNKNOWN_ORDER];
        if (order_symbol != symbol_id || order_buy != buy || orig == cid)
            return reason_code[R_BAD_ORDER];
        added = shares > worst ? shares - worst : 0;
    } else {
        added = shares;
    }
    /* 4. size and price format */
    ll r[14];
    for (int i = 0; i < 14; i++)
        if (as_ll(PyTuple_GET_ITEM(row, i), &r[i]) < 0)
            return FALLBACK;
    const ll max_shares = r[0], max_notional = r[1], min_shares = r[2], round_lot = r[3], tick = r[4];
    const ll collar_divisor = r[5], collar_ppm = r[6], collar_abs = r[7], max_long = r[8], max_short = r[9];
    const ll sector = r[10], sector_limit = r[11], min_price = r[12], max_price = r[13];
    if (tick <= 0 || round_lot < 0 || collar_divisor < 0 || collar_ppm < 0 || sector < 0)
        return FALLBACK;
    if (shares < min_shares)
        return reason_code[R_MIN_SIZE];
    if (shares > max_shares)
        return reason_code[R_MAX_SHARES];
    if (round_lot && shares % round_lot)
        return reason_code[R_ROUND_LOT];
    PyObject *global_row = SLOT(engine, engine_off[E_GLOBAL_ROW]);
    if (global_row == NULL || !PyTuple_CheckExact(global_row) || PyTuple_GET_SIZE(global_row) != 5)
        return FALLBACK;
    ll max_open_orders, gross_cap, max_net;
    int allow_market = truth(PyTuple_GET_ITEM(global_row, 1));
    int prevent_self_match = truth(PyTuple_GET_ITEM(global_row, 4));
    if (allow_market < 0 || prevent_self_match < 0 || as_ll(PyTuple_GET_ITEM(global_row, 0), &max_open_orders) < 0 ||
        as_ll(PyTuple_GET_ITEM(global_row, 2), &gross_cap) < 0 || as_ll(PyTuple_GET_ITEM(global_row, 3), &max_net) < 0) {
        PyErr_Clear();
        return FALLBACK;
    }
    const int market_order = price == K[K_MARKET_PRICE];
    if (market_order) {
        if (!allow_market)
            return reason_code[R_MARKET_ORDER];
    } else if (price % tick) {
        return reason_code[R_TICK];
    } else if (price < min_price || price > max_price) {
        return reason_code[R_PRICE_BAND];
    }
    if (minimum_quantity || iso || side == K[K_SELL_SHORT] || (display && display != K[K_VISIBLE]) ||
        (capacity && capacity != K[K_AGENCY])) {           /* RiskEngine._check_flags */
        if (display < 0 || display > 255 || !display_ok[display] || capacity < 0 || capacity > 255 ||
            !capacity_ok[capacity] || (iso != 0 && iso != 1))
            return reason_code[R_BAD_ORDER];
        PyObject *rules = SLOT(engine, engine_off[E_FLAG_RULES]);
        if (rules == NULL || !PyTuple_CheckExact(rules) || PyTuple_GET_SIZE(rules) != 3)
            return FALLBACK;
        PyObject *short_list = PyTuple_GET_ITEM(rules, 0);
        if (side == K[K_SELL_SHORT]) {
            if (!PyList_CheckExact(short_list) || symbol_id >= PyList_GET_SIZE(short_list))
                return FALLBACK;
            int allowed = truth(PyList_GET_ITEM(short_list, symbol_id));
            if (allowed < 0) {
                PyErr_Clear();
                return FALLBACK;
            }
            if (!allowed)
                return reason_code[R_SHORT_SALE];
        }
        int allow_hidden = truth(PyTuple_GET_ITEM(rules, 1)), allow_iso = truth(PyTuple_GET_ITEM(rules, 2));
        if (allow_hidden < 0 || allow_iso < 0) {
            PyErr_Clear();
            return FALLBACK;
        }
        if (display == K[K_HIDDEN] && !allow_hidden)
            return reason_code[R_HIDDEN_ORDER];
        if (iso && !allow_iso)
            return reason_code[R_ISO_ORDER];
        if (minimum_quantity) {                    /* the one rule, in wire.ouch */
            PyObject *stack[4] = {args[A_SHARES], args[A_MIN_QTY], args[A_TIF], args[A_PRICE]};
            PyObject *problem = PyObject_Vectorcall(min_quantity_problem, stack, 4, NULL);
            if (problem == NULL) {
                PyErr_Clear();
                return FALLBACK;
            }
            int bad = problem != Py_None;
            Py_DECREF(problem);
            if (bad)
                return reason_code[R_MIN_QUANTITY];
            /* Python ran: read the portfolio again rather than trust the borrowed pointer */
            portfolio = SLOT(engine, engine_off[E_PORTFOLIO]);
            if (portfolio == NULL || !Py_IS_TYPE(portfolio, portfolio_type))
                return FALLBACK;
        }
    }
    /* 5. rate and counts */
    PyObject *rate = SLOT(engine, engine_off[E_RATE]);
    int full = rate == NULL ? -1 : window_full(rate, now);
    if (full != 0)
        return FALLBACK;                           /* MESSAGE_RATE: the reference counts the throttle */
    ll open_count;
    if (as_ll(PF(P_OPEN_COUNT), &open_count) < 0)
        return FALLBACK;
    if (action == K[K_NEW]) {
        if (open_count >= max_open_orders)
            return reason_code[R_MAX_OPEN_ORDERS];
        PyObject *identical = SLOT(engine, engine_off[E_IDENTICAL]);
        if (identical == NULL || !PyDict_CheckExact(identical))
            return FALLBACK;
        if (PyDict_GET_SIZE(identical)) {
            PyObject *key = PyTuple_Pack(4, args[A_SYMBOL], args[A_SIDE], args[A_SHARES], args[A_PRICE]);
            if (key == NULL) {
                PyErr_Clear();
                return FALLBACK;
            }
            PyObject *window = PyDict_GetItemWithError(identical, key);
            Py_DECREF(key);
            if (window == NULL && PyErr_Occurred()) {
                PyErr_Clear();
                return FALLBACK;
            }
            if (window != NULL) {
                int repeated = window_full(window, now);
                if (repeated < 0)
                    return FALLBACK;
                if (repeated)
                    return reason_code[R_REPEATED_ORDER];
            }
        }
    }
    if (prevent_self_match) {
        ll own;
        if (buy) {
            if (list_ll(PF(P_OWN_ASK), symbol_id, &own) < 0)
                return FALLBACK;
            if (own != K[K_NO_ASK] && (market_order || price >= own))
                return reason_code[R_SELF_MATCH];
        } else {
            if (list_ll(PF(P_OWN_BID), symbol_id, &own) < 0)
                return FALLBACK;
            if (own && (market_order || price <= own))
                return reason_code[R_SELF_MATCH];
        }
    }
    /* 6. the book, one consistent copy of the slot (a write in progress: the reference's retrying read) */
    ll seq_offset;
    if (list_ll(SLOT(engine, engine_off[E_MS_SEQ]), symbol_id, &seq_offset) < 0 || seq_offset < 0 || seq_offset & 7)
        return FALLBACK;
    PyObject *buffer = SLOT(engine, engine_off[E_MS_BUFFER]);
    Py_buffer view;
    if (buffer == NULL || PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (seq_offset > view.len - market_span) {
        PyBuffer_Release(&view);
        return FALLBACK;
    }
    const char *slot = (const char *)view.buf + seq_offset;
    uint64_t before = __atomic_load_n((const uint64_t *)slot, __ATOMIC_ACQUIRE);
    uint32_t bid, ask, last;
    uint8_t flags, trading_state;
    memcpy(&bid, slot + market_off[M_BID], 4);
    memcpy(&ask, slot + market_off[M_ASK], 4);
    memcpy(&last, slot + market_off[M_LAST], 4);
    memcpy(&flags, slot + market_off[M_FLAGS], 1);
    memcpy(&trading_state, slot + market_off[M_STATE], 1);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint64_t after = __atomic_load_n((const uint64_t *)slot, __ATOMIC_ACQUIRE);
    PyBuffer_Release(&view);
    if ((before & 1) || after != before)
        return FALLBACK;                           /* the reference counts the torn read and retries */
    if ((flags & K[K_BAD_BOOK]) || trading_state != K[K_TRADING]) {
        if ((flags & K[K_NO_BOOK]) || !trading_state)
            return reason_code[R_BOOK_STALE];
        if ((flags & K[K_BOOK_FLAG_HALTED]) || trading_state != K[K_TRADING])
            return reason_code[R_SYMBOL_HALTED];
        return reason_code[R_BOOK_CROSSED];
    }
    ll ref;
    if (bid && ask) {
        if (bid > ask)
            return reason_code[R_BOOK_CROSSED];
        ref = ((ll)bid + ask) >> 1;
    } else if (last) {
        ref = last;
    } else {
        return reason_code[R_NO_REFERENCE_PRICE];
    }
    i128 band;
    if (collar_divisor)
        band = ref / collar_divisor;
    else
        band = collar_ppm ? (i128)ref * collar_ppm / 1000000 : collar_abs;
    i128 px = price;
    if (market_order)
        px = buy ? ref + band : ref - band;
    else if (px > ref + band || px < ref - band)
        return reason_code[R_PRICE_COLLAR];
    if ((i128)shares * px > max_notional)
        return reason_code[R_MAX_NOTIONAL];
    /* 7. loss (a new peak or a breach: the reference moves the floor or latches the kill switch) */
    ll realized_total, unrealized_total, peak, floor_;
    if (as_ll(PF(P_REALIZED_TOTAL), &realized_total) < 0 || as_ll(PF(P_UNREALIZED_TOTAL), &unrealized_total) < 0 ||
        as_ll(SLOT(engine, engine_off[E_PEAK]), &peak) < 0 || as_ll(SLOT(engine, engine_off[E_LOSS_FLOOR]), &floor_) < 0)
        return FALLBACK;
    i128 pnl = (i128)realized_total + unrealized_total;
    if (pnl > peak || pnl < floor_)
        return FALLBACK;
    /* 8-9. REDUCING, the worst-case position */
    ll position, open_buy, open_sell;
    if (list_ll(PF(P_POSITION), symbol_id, &position) < 0 || list_ll(PF(P_OPEN_BUY), symbol_id, &open_buy) < 0 ||
        list_ll(PF(P_OPEN_SELL), symbol_id, &open_sell) < 0)
        return FALLBACK;
    i128 worst;
    if (buy) {
        worst = (i128)position + open_buy + added;
        if (added && state == K[K_REDUCING] && worst > 0)
            return reason_code[R_TRADING_REDUCING];
        if (worst > max_long)
            return reason_code[R_MAX_LONG];
    } else {
        worst = (i128)position - open_sell - added;
        if (added && state == K[K_REDUCING] && worst < 0)
            return reason_code[R_TRADING_REDUCING];
        if (-worst > max_short)
            return reason_code[R_MAX_SHORT];
    }
    if (!added)
        return 0;
    /* 10. exposure: this symbol revalued at the reference price */
    ll long_total, short_total, long_notional, short_notional, gross_notional, gross_total, sector_gross, max_gross;
    if (as_ll(PF(P_LONG_TOTAL), &long_total) < 0 || as_ll(PF(P_SHORT_TOTAL), &short_total) < 0 ||
        list_ll(PF(P_LONG_NOTIONAL), symbol_id, &long_notional) < 0 ||
        list_ll(PF(P_SHORT_NOTIONAL), symbol_id, &short_notional) < 0 ||
        list_ll(PF(P_GROSS_NOTIONAL), symbol_id, &gross_notional) < 0 || as_ll(PF(P_GROSS_TOTAL), &gross_total) < 0 ||
        list_ll(PF(P_SECTOR_GROSS), sector, &sector_gross) < 0 ||
        as_ll(SLOT(engine, engine_off[E_MAX_GROSS]), &max_gross) < 0)
        return FALLBACK;
    int grows, net_over;
    if (buy) {
        grows = worst > (i128)open_sell - position;
        net_over = (i128)long_total - long_notional + worst * ref > max_net;
    } else {
        grows = -worst > (i128)position + open_buy;
        net_over = (i128)short_total - short_notional + worst * ref < -(i128)max_net;
    }
    if (!grows)
        return net_over ? reason_code[R_NET_EXPOSURE] : 0;
    i128 gross_delta = (buy ? worst : -worst) * ref - gross_notional;
    i128 gross_after = gross_total + gross_delta;
    if (gross_after > gross_cap && gross_after > max_gross)
        return reason_code[R_GROSS_EXPOSURE];
    if (net_over)
        return reason_code[R_NET_EXPOSURE];
    if (sector_gross + gross_delta > sector_limit)
        return reason_code[R_SECTOR_CONCENTRATION];
    if (gross_after > gross_cap)
        return reason_code[R_LEVERAGE];
    return 0;
#undef PF
}

/* ---------------------------------------------------------------- the intent path (OrderIntent -> ApprovedOrder) */

/* OrderIntent fields the check reads, in check_set's argument order, then the header and the action
 * code the agent keeps for itself (REDUCE); offsets and sizes from the catalog (configure_path). */
static const char *intent_fields[A_MAX] = {
    "action", "client_order_id", "orig_client_order_id", "symbol_id", "side", "shares", "price", "time_in_force",
    NULL /* now: the agent's clock */, "display", "capacity", "minimum_quantity", "intermarket_sweep"};
static Field intent_field[A_MAX];
static int path_configured = 0;
static uint16_t intent_type_id;
static Py_ssize_t intent_size, approved_size, approved_stamp_off;
static uint16_t approved_type_id, approved_version;
static ll reduce_action;

static PyObject *
configure_path(PyObject *module, PyObject *args)
{
    PyObject *fields;
    int type_id, a_type, a_version;
    Py_ssize_t i_size, a_size, stamp;
    long long reduce;
    if (!PyArg_ParseTuple(args, "O!iniinnL", &PyDict_Type, &fields, &type_id, &i_size, &a_type, &a_version, &a_size,
                          &stamp, &reduce))
        return NULL;
    for (int i = 0; i < A_MAX; i++) {
        if (intent_fields[i] == NULL) {
            intent_field[i].off = intent_field[i].size = 0;
            continue;
        }
        PyObject *v = PyDict_GetItemString(fields, intent_fields[i]);
        Py_ssize_t off, size;
        if (v == NULL || !PyArg_ParseTuple(v, "nn", &off, &size)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_KeyError, "configure_path: OrderIntent.%s missing", intent_fields[i]);
            return NULL;
        }
        if ((size != 1 && size != 2 && size != 4 && size != 8) || off < 8 || off + size > i_size) {
            PyErr_Format(PyExc_ValueError, "configure_path: OrderIntent.%s at %zd, %zd bytes", intent_fields[i], off,
                         size);
            return NULL;
        }
        intent_field[i].off = (int16_t)off;
        intent_field[i].size = (int16_t)size;
    }
    if (a_size != i_size + 8 || stamp != i_size || i_size < 8 || i_size > 4096) {
        PyErr_SetString(PyExc_ValueError, "configure_path: an ApprovedOrder is its OrderIntent's fields and the stamp");
        return NULL;
    }
    intent_type_id = (uint16_t)type_id;
    intent_size = i_size;
    approved_type_id = (uint16_t)a_type;
    approved_version = (uint16_t)a_version;
    approved_size = a_size;
    approved_stamp_off = stamp;
    reduce_action = reduce;
    path_configured = 1;
    Py_RETURN_NONE;
}

static inline uint64_t
read_unsigned(const char *p, int size)
{
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
    switch (size) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

/* ---------------------------------------------------------------- FastCheck: engine.check, compiled */

typedef struct {
    PyObject_HEAD
    PyObject *engine;
    PyObject *fallback;            /* engine.check (bound) */
    vectorcallfunc vectorcall;
    unsigned long long decided;    /* calls decided here */
    unsigned long long fallbacks;  /* calls the reference decided */
} FastCheck;

static PyObject *
FastCheck_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastCheck *self = (FastCheck *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && nargs >= A_DISPLAY && nargs <= A_MAX && Py_IS_TYPE(self->engine, engine_type)) {
        int reason = check_set(self->engine, args, nargs);
        if (reason >= 0) {
            self->decided++;
            return PyLong_FromLong(reason);
        }
    }
    self->fallbacks++;
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* approve(intent_buffer, offset, approved_buffer, out, now): the agent's hop for one OrderIntent.
 * Reads the intent from its ring slot, decides (here, or engine.check for what is not the common
 * case), and for an approval writes the ApprovedOrder into the claimed slot ``out`` (header, the
 * intent's fields byte for byte, t_risk_out_ns stamped last, as time.time_ns() reads the clock); the
 * caller commits. Returns the reason (0: approved), or -1 for a record that is not an OrderIntent
 * or a strategy's REDUCE: the agent's own path handles those. */
static PyObject *
FastCheck_approve(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "approve(intent_buffer, offset, approved_buffer, out, now)");
        return NULL;
    }
    if (!path_configured) {
        PyErr_SetString(PyExc_RuntimeError, "_risk_fast.configure_path() was not called");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]), out = PyLong_AsSsize_t(args[3]);
    if ((offset == -1 || out == -1) && PyErr_Occurred())
        return NULL;
    Py_buffer in_view, out_view;
    if (PyObject_GetBuffer(args[0], &in_view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (offset < 0 || offset > in_view.len - intent_size) {
        PyBuffer_Release(&in_view);
        PyErr_Format(PyExc_ValueError, "intent at %zd outside the %zd-byte buffer", offset, in_view.len);
        return NULL;
    }
    const char *intent = (const char *)in_view.buf + offset;
    uint16_t type_id;
    memcpy(&type_id, intent, 2);
    ll action = (ll)read_unsigned(intent + intent_field[A_ACTION].off, intent_field[A_ACTION].size);
    if (type_id != intent_type_id || action == reduce_action) {
        PyBuffer_Release(&in_view);
        return PyLong_FromLong(-1);
    }
    PyObject *call[A_MAX];
    int made = 0;
    for (; made < A_MAX; made++) {
        if (made == A_NOW) {
            call[made] = args[4];
            Py_INCREF(call[made]);
        } else {
            Field f = intent_field[made];
            call[made] = PyLong_FromUnsignedLongLong(read_unsigned(intent + f.off, f.size));
        }
        if (call[made] == NULL)
            break;
    }
    PyObject *result = NULL;
    if (made == A_MAX) {
        int reason = Py_IS_TYPE(self->engine, engine_type) ? check_set(self->engine, call, A_MAX) : FALLBACK;
        if (reason >= 0) {
            self->decided++;
            result = PyLong_FromLong(reason);
        } else {
            self->fallbacks++;
            result = PyObject_Vectorcall(self->fallback, call, A_MAX, NULL);
            if (result != NULL && !PyLong_Check(result)) {
                Py_DECREF(result);
                result = NULL;
                PyErr_SetString(PyExc_TypeError, "engine.check returned a non-int");
            }
        }
    }
    for (int i = 0; i < made; i++)
        Py_DECREF(call[i]);
    long code = result == NULL ? -1 : PyLong_AsLong(result);
    if (code == -1 && PyErr_Occurred())
        Py_CLEAR(result);
    if (result == NULL || code != 0) {            /* refused (or an error): nothing written */
        PyBuffer_Release(&in_view);
        return result;
    }
    if (PyObject_GetBuffer(args[2], &out_view, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&in_view);
        Py_DECREF(result);
        return NULL;
    }
    if (out < 0 || out > out_view.len - approved_size) {
        PyBuffer_Release(&in_view);
        PyBuffer_Release(&out_view);
        Py_DECREF(result);
        PyErr_Format(PyExc_ValueError, "approved slot at %zd outside the %zd-byte buffer", out, out_view.len);
        return NULL;
    }
    char *dst = (char *)out_view.buf + out;
    uint32_t size32 = (uint32_t)approved_size;
    memcpy(dst, &approved_type_id, 2);
    memcpy(dst + 2, &approved_version, 2);
    memcpy(dst + 4, &size32, 4);
    memcpy(dst + 8, intent + 8, (size_t)(intent_size - 8));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t stamp = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    memcpy(dst + approved_stamp_off, &stamp, 8);
    PyBuffer_Release(&in_view);
    PyBuffer_Release(&out_view);
    return result;
}

static PyMethodDef FastCheck_methods[] = {
    {"approve", (PyCFunction)(void (*)(void))FastCheck_approve, METH_FASTCALL,
     "approve(intent_buffer, offset, approved_buffer, out, now) -> reason, or -1: not an OrderIntent to check"},
    {NULL}
};

static int
FastCheck_init(FastCheck *self, PyObject *args, PyObject *kwds)
{
    PyObject *engine;
    if (!PyArg_ParseTuple(args, "O", &engine))
        return -1;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_risk_fast.configure() was not called");
        return -1;
    }
    if (!PyObject_TypeCheck(engine, engine_type)) {
        PyErr_SetString(PyExc_TypeError, "FastCheck needs a RiskEngine");
        return -1;
    }
    PyObject *fallback = PyObject_GetAttrString(engine, "check");
    if (fallback == NULL)
        return -1;
    Py_INCREF(engine);
    Py_XSETREF(self->engine, engine);
    Py_XSETREF(self->fallback, fallback);
    self->vectorcall = FastCheck_vectorcall;
    return 0;
}

static void
FastCheck_dealloc(FastCheck *self)
{
    Py_XDECREF(self->engine);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef FastCheck_members[] = {
    {"engine", T_OBJECT_EX, offsetof(FastCheck, engine), READONLY, "the RiskEngine whose state is read"},
    {"decided", T_ULONGLONG, offsetof(FastCheck, decided), READONLY, "calls decided by the compiled checks"},
    {"fallbacks", T_ULONGLONG, offsetof(FastCheck, fallbacks), READONLY, "calls the reference decided"},
    {NULL}
};

static PyTypeObject FastCheckType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.risk._risk_fast.FastCheck",
    .tp_basicsize = sizeof(FastCheck),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FastCheck(engine): engine.check(...) with the same arguments and results, compiled for the common case",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastCheck_init,
    .tp_dealloc = (destructor)FastCheck_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastCheck, vectorcall),
    .tp_members = FastCheck_members,
    .tp_methods = FastCheck_methods,
};

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure((RiskEngine, Portfolio, OpenOrder, SlidingWindow), constants, reasons, displays, capacities, "
     "market_state_fields, minimum_quantity_problem)"},
    {"configure_path", configure_path, METH_VARARGS,
     "configure_path(order_intent_fields, intent_type_id, intent_size, approved_type_id, approved_version, "
     "approved_size, t_risk_out_offset, reduce_action)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "_risk_fast", .m_doc = NULL, .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC
PyInit__risk_fast(void)
{
    if (PyType_Ready(&FastCheckType) < 0)
        return NULL;
    state_name = PyUnicode_InternFromString("state");
    if (state_name == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastCheckType);
    if (PyModule_AddObject(m, "FastCheck", (PyObject *)&FastCheckType) < 0) {
        Py_DECREF(&FastCheckType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
