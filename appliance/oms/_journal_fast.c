/*
 * The OMS journal's hot path in C: CRC-32C and one whole record append into the mapped file.
 *
 * A record is a header then its payload. The header's layout is not written here: journal.py
 * gives it once with set_layout() from journal_format.RECORD_HEADER (the header's size and the
 * offset and width of its crc, length, sequence, timestamp and type fields); every other header
 * byte is written zero. The CRC field comes first and covers every byte after it. In Python the
 * pack, the copy and the CRC call cost about 3 us a record; here one call does all three.
 *
 * CRC-32C (Castagnoli, reflected 0x82F63B78), slicing by 8: portable C, no CPU feature test;
 * the same function the Python fallbacks compute (crc32c(b"123456789") == 0xE3069283).
 *
 * The order step (order_step): a new order's or replace's ORDER_SENT record appended as above,
 * then its OUCH frame packed into the caller's send buffer and handed to the non-blocking socket,
 * in one call. The shapes are given from Python once, as the header's is: the record's payload
 * from journal_records.ORDER_SENT (set_step_record, by journal.py) and each frame from the wire
 * codec's DataFrame (set_step_frame, by oms/order_step.py); nothing of either layout is written
 * here. The Python path (the record's struct pack, Journal.append, DataFrame.pack,
 * VenueSession.send_packet) is the reference: tests/oms/test_oms_order_step.py holds them equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the journal is little-endian and store_le() copies the low bytes of a native integer"
#endif

#define POLY 0x82F63B78u
#define MAX_HEADER_SIZE 256

/* The record header's layout, from set_layout(); header_size 0 until then (append refuses). */
enum { F_CRC, F_LENGTH, F_SEQUENCE, F_TIMESTAMP, F_TYPE, N_FIELDS };
static const char *field_names[N_FIELDS] = {"crc", "length", "sequence", "timestamp", "type"};
static Py_ssize_t header_size;
static Py_ssize_t field_offset[N_FIELDS];
static int field_width[N_FIELDS];

static uint32_t table[8][256];

static void build_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ POLY : crc >> 1;
        table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = table[0][n];
        for (int t = 1; t < 8; t++) {
            crc = table[0][crc & 0xFF] ^ (crc >> 8);
            table[t][n] = crc;
        }
    }
}

/* The raw register update (no pre/post inversion). */
static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);          /* little-endian x86-64: byte 0 is the low byte */
        uint32_t lo = (uint32_t)word ^ crc;
        uint32_t hi = (uint32_t)(word >> 32);
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
              table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
              table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

PyDoc_STRVAR(crc32c_doc,
"crc32c(data, crc=0) -> int\n\nCRC-32C of a bytes-like object, continuing ``crc`` (crc32c(b, crc32c(a)) == crc32c(a + b)).");

static PyObject *
py_crc32c(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long crc = 0;
    if (!PyArg_ParseTuple(args, "y*|k", &view, &crc))
        return NULL;
    uint32_t value;
    Py_BEGIN_ALLOW_THREADS
    value = crc_update((uint32_t)crc ^ 0xFFFFFFFFu, view.buf, (size_t)view.len) ^ 0xFFFFFFFFu;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(value);
}

/* Little-endian store of the low ``width`` bytes of ``value`` (x86-64: the first bytes). */
static inline void store_le(unsigned char *p, uint64_t value, int width)
{
    memcpy(p, &value, (size_t)width);
}

static inline int fits(uint64_t value, int width)
{
    return width == 8 || value < ((uint64_t)1 << (8 * width));
}

PyDoc_STRVAR(set_layout_doc,
"set_layout(header_size, fields)\n\n"
"The record header's layout: ``fields`` is five (offset, width) pairs, for the crc, length,\n"
"sequence, timestamp and type fields, in that order. The crc field must come first and be 4\n"
"bytes (it covers every byte after it); widths are 1, 2, 4 or 8; fields lie inside the header and\n"
"do not overlap. ValueError otherwise (and the previous layout stays).");

static PyObject *
py_set_layout(PyObject *self, PyObject *args)
{
    Py_ssize_t size;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "nO", &size, &fields))
        return NULL;
    if (size < 4 || size > MAX_HEADER_SIZE) {
        PyErr_Format(PyExc_ValueError, "record header of %zd bytes: 4 to %d", size, MAX_HEADER_SIZE);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence of (offset, width) pairs");
    if (seq == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != N_FIELDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "fields must be %d (offset, width) pairs: crc, length, sequence, "
                     "timestamp, type", N_FIELDS);
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    int widths[N_FIELDS];
    unsigned char used[MAX_HEADER_SIZE] = {0};
    for (int i = 0; i < N_FIELDS; i++) {
        Py_ssize_t offset, width;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nn;each field is (offset, width)", &offset, &width)) {
            Py_DECREF(seq);
            return NULL;
        }
        if (!(width == 1 || width == 2 || width == 4 || width == 8) || offset < 0 || offset + width > size) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "field %s: offset %zd width %zd does not fit a %zd-byte header "
                         "(widths 1, 2, 4, 8)", field_names[i], offset, width, size);
            return NULL;
        }
        for (Py_ssize_t k = offset; k < offset + width; k++) {
            if (used[k]) {
                Py_DECREF(seq);
                PyErr_Format(PyExc_ValueError, "field %s overlaps another at byte %zd", field_names[i], k);
                return NULL;
            }
            used[k] = 1;
        }
        offsets[i] = offset;
        widths[i] = (int)width;
    }
    Py_DECREF(seq);
    if (offsets[F_CRC] != 0 || widths[F_CRC] != 4) {
        PyErr_SetString(PyExc_ValueError, "the crc field must be the header's first 4 bytes (it covers what follows)");
        return NULL;
    }
    memcpy(field_offset, offsets, sizeof offsets);
    memcpy(field_width, widths, sizeof widths);
    header_size = size;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(append_doc,
"append(buffer, offset, record_type, sequence, timestamp_ns, payload) -> end\n\n"
"Write one whole record at ``offset`` of the writable ``buffer`` (the mapped journal): header in\n"
"the layout given to set_layout(), payload, then the CRC field last. Returns the offset just after\n"
"the payload (unpadded). The caller has checked that the record fits (Journal.append); a record\n"
"past the buffer, or a value too wide for its field, raises ValueError; no layout, RuntimeError.");

static PyObject *
py_append(PyObject *self, PyObject *args)
{
    Py_buffer out, payload;
    Py_ssize_t offset;
    unsigned long long record_type, sequence, timestamp;
    if (!PyArg_ParseTuple(args, "w*nKKKy*", &out, &offset, &record_type, &sequence, &timestamp, &payload))
        return NULL;
    const char *error = NULL;
    Py_ssize_t end = offset + header_size + payload.len;
    if (header_size == 0)
        error = "no record layout: call set_layout() first";
    else if (offset < 0 || end > out.len)
        error = "journal record does not fit the buffer";
    else if (!fits((uint64_t)payload.len, field_width[F_LENGTH]) || !fits(record_type, field_width[F_TYPE]) ||
             !fits(sequence, field_width[F_SEQUENCE]) || !fits(timestamp, field_width[F_TIMESTAMP]))
        error = "a value does not fit its field of the record header";
    if (error != NULL) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&payload);
        PyErr_SetString(header_size == 0 ? PyExc_RuntimeError : PyExc_ValueError, error);
        return NULL;
    }
    unsigned char *p = (unsigned char *)out.buf + offset;
    memset(p + 4, 0, (size_t)(header_size - 4));
    store_le(p + field_offset[F_LENGTH], (uint64_t)payload.len, field_width[F_LENGTH]);
    store_le(p + field_offset[F_SEQUENCE], sequence, field_width[F_SEQUENCE]);
    store_le(p + field_offset[F_TIMESTAMP], timestamp, field_width[F_TIMESTAMP]);
    store_le(p + field_offset[F_TYPE], record_type, field_width[F_TYPE]);
    memcpy(p + header_size, payload.buf, (size_t)payload.len);
    uint32_t crc = crc_update(0xFFFFFFFFu, p + 4, (size_t)(header_size - 4 + payload.len)) ^ 0xFFFFFFFFu;
    memcpy(p, &crc, 4);
    PyBuffer_Release(&out);
    PyBuffer_Release(&payload);
    return PyLong_FromSsize_t(end);
}

/* ------------------------------------------------------------------ the order step */

#define MAX_SHAPE_FIELDS 48
#define MAX_SHAPE_SIZE 256
#define N_STEP_FRAMES 4

/* A fixed-size byte layout filled from a tuple of values: 'u' an unsigned integer, 'i' a signed one
 * (both little- or big-endian as the shape says), 's' bytes NUL-padded or cut to the width (struct's
 * "Ns"), 'c' exactly one byte (struct's "c"). Bytes no field names keep the image's value (pads 0,
 * a frame's constant length and type bytes). */
typedef struct {
    Py_ssize_t size;                       /* 0: not given yet */
    int n;
    int big_endian;
    unsigned char image[MAX_SHAPE_SIZE];
    Py_ssize_t offset[MAX_SHAPE_FIELDS];
    int width[MAX_SHAPE_FIELDS];
    char kind[MAX_SHAPE_FIELDS];
} Shape;

static Shape step_record;                  /* the ORDER_SENT payload */
static unsigned long long step_record_type;
static Shape step_frames[N_STEP_FRAMES];
static long long last_handed_ns;           /* CLOCK_MONOTONIC (time.perf_counter_ns) before the last send */

static int
parse_shape(Shape *out, Py_ssize_t size, const char *image, Py_ssize_t image_len, PyObject *fields, int big_endian)
{
    Shape shape;
    memset(&shape, 0, sizeof shape);
    if (size <= 0 || size > MAX_SHAPE_SIZE) {
        PyErr_Format(PyExc_ValueError, "a step shape of %zd bytes: 1 to %d", size, MAX_SHAPE_SIZE);
        return -1;
    }
    if (image != NULL) {
        if (image_len != size) {
            PyErr_Format(PyExc_ValueError, "the image is %zd bytes, the shape %zd", image_len, size);
            return -1;
        }
        memcpy(shape.image, image, (size_t)size);
    }
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence of (offset, width, kind)");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_SHAPE_FIELDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%zd fields: at most %d", n, MAX_SHAPE_FIELDS);
        return -1;
    }
    unsigned char used[MAX_SHAPE_SIZE] = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t offset, width;
        int kind;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nnC;each field is (offset, width, kind)",
                              &offset, &width, &kind)) {
            Py_DECREF(seq);
            return -1;
        }
        int integer = kind == 'u' || kind == 'i';
        if (!(integer || kind == 's' || kind == 'c') || offset < 0 || width <= 0 || offset + width > size ||
                (integer && !(width == 1 || width == 2 || width == 4 || width == 8)) || (kind == 'c' && width != 1)) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "field %zd: offset %zd width %zd kind %c does not fit a %zd-byte shape "
                         "(kinds u, i: widths 1, 2, 4, 8; s; c: width 1)", i, offset, width, kind, size);
            return -1;
        }
        for (Py_ssize_t k = offset; k < offset + width; k++) {
            if (used[k]) {
                Py_DECREF(seq);
                PyErr_Format(PyExc_ValueError, "field %zd overlaps another at byte %zd", i, k);
                return -1;
            }
            used[k] = 1;
        }
        shape.offset[i] = offset;
        shape.width[i] = (int)width;
        shape.kind[i] = (char)kind;
    }
    Py_DECREF(seq);
    shape.n = (int)n;
    shape.size = size;
    shape.big_endian = big_endian;
    *out = shape;
    return 0;
}

/* The values of ``values`` (a tuple, one per field) written over a copy of the image at ``p``.
 * Nothing is written to ``p`` unless every value fits (so a bad value leaves no partial record). */
static int
fill_shape(const Shape *shape, PyObject *values, unsigned char *p, const char *what)
{
    if (!PyTuple_Check(values) || PyTuple_GET_SIZE(values) != shape->n) {
        PyErr_Format(PyExc_TypeError, "%s: a tuple of %d values", what, shape->n);
        return -1;
    }
    unsigned char staged[MAX_SHAPE_SIZE];
    memcpy(staged, shape->image, (size_t)shape->size);
    for (int i = 0; i < shape->n; i++) {
        PyObject *value = PyTuple_GET_ITEM(values, i);
        unsigned char *q = staged + shape->offset[i];
        int width = shape->width[i];
        char kind = shape->kind[i];
        if (kind == 'u' || kind == 'i') {
            uint64_t raw;
            if (!PyLong_Check(value)) {
                PyErr_Format(PyExc_TypeError, "%s: value %d is not an integer", what, i);
                return -1;
            }
            if (kind == 'u') {
                unsigned long long v = PyLong_AsUnsignedLongLong(value);
                if (v == (unsigned long long)-1 && PyErr_Occurred())
                    goto range;
                if (width < 8 && v >> (8 * width))
                    goto range;
                raw = v;
            } else {
                long long v = PyLong_AsLongLong(value);
                if (v == -1 && PyErr_Occurred())
                    goto range;
                if (width < 8 && (v < -((long long)1 << (8 * width - 1)) || v >= ((long long)1 << (8 * width - 1))))
                    goto range;
                raw = (uint64_t)v;
            }
            if (shape->big_endian) {
                for (int k = width - 1; k >= 0; k--) {
                    q[k] = (unsigned char)raw;
                    raw >>= 8;
                }
            } else {
                store_le(q, raw, width);
            }
            continue;
range:
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "%s: value %d does not fit %d bytes", what, i, width);
            return -1;
        }
        const char *bytes;
        Py_ssize_t len;
        if (PyBytes_Check(value)) {
            bytes = PyBytes_AS_STRING(value);
            len = PyBytes_GET_SIZE(value);
        } else if (PyByteArray_Check(value)) {
            bytes = PyByteArray_AS_STRING(value);
            len = PyByteArray_GET_SIZE(value);
        } else {
            PyErr_Format(PyExc_TypeError, "%s: value %d is not bytes", what, i);
            return -1;
        }
        if (kind == 'c') {
            if (len != 1) {
                PyErr_Format(PyExc_ValueError, "%s: value %d is not one byte", what, i);
                return -1;
            }
            q[0] = (unsigned char)bytes[0];
        } else {
            Py_ssize_t take = len < width ? len : width;
            memcpy(q, bytes, (size_t)take);
            memset(q + take, 0, (size_t)(width - take));
        }
    }
    memcpy(p, staged, (size_t)shape->size);
    return 0;
}

PyDoc_STRVAR(set_step_record_doc,
"set_step_record(record_type, size, fields)\n\n"
"The payload order_step() journals: ``record_type`` in the record header, ``size`` bytes, little-endian,\n"
"``fields`` the (offset, width, kind) of each value it takes, in order ('u', 'i', 's', 'c'); other bytes 0.");

static PyObject *
py_set_step_record(PyObject *self, PyObject *args)
{
    unsigned long long record_type;
    Py_ssize_t size;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "KnO", &record_type, &size, &fields))
        return NULL;
    if (header_size == 0) {
        PyErr_SetString(PyExc_RuntimeError, "no record layout: call set_layout() first");
        return NULL;
    }
    if (!fits(record_type, field_width[F_TYPE]) || !fits((uint64_t)size, field_width[F_LENGTH])) {
        PyErr_SetString(PyExc_ValueError, "the record type or size does not fit the record header");
        return NULL;
    }
    Shape shape;
    if (parse_shape(&shape, size, NULL, 0, fields, 0) < 0)
        return NULL;
    step_record = shape;
    step_record_type = record_type;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_step_frame_doc,
"set_step_frame(frame_id, image, fields)\n\n"
"Frame ``frame_id`` (0..3) of order_step(): ``image`` its bytes with the constant ones set (a SoupBinTCP\n"
"packet's length and type, the OUCH type), big-endian, ``fields`` the (offset, width, kind) of each value.");

static PyObject *
py_set_step_frame(PyObject *self, PyObject *args)
{
    int frame_id;
    Py_buffer image;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "iy*O", &frame_id, &image, &fields))
        return NULL;
    if (frame_id < 0 || frame_id >= N_STEP_FRAMES) {
        PyBuffer_Release(&image);
        PyErr_Format(PyExc_ValueError, "frame id %d: 0 to %d", frame_id, N_STEP_FRAMES - 1);
        return NULL;
    }
    Shape shape;
    int rc = parse_shape(&shape, image.len, image.buf, image.len, fields, 1);
    PyBuffer_Release(&image);
    if (rc < 0)
        return NULL;
    step_frames[frame_id] = shape;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(order_step_doc,
"order_step(journal, offset, sequence, timestamp_ns, fd, out, frame_id, record, frame) -> sent | None\n\n"
"One record of the set_step_record() payload (``record``: its values) appended at ``offset`` of the mapped\n"
"journal as append() writes it (the CRC last); then frame ``frame_id`` packed from ``frame`` into the\n"
"first bytes of the writable ``out``, and, when ``fd`` >= 0, handed to that non-blocking socket in one\n"
"send(): the bytes the kernel took (0 when it would block), or -errno when the send failed. None when\n"
"``fd`` < 0 (the caller sends ``out``). A value that does not fit its field raises before any byte is\n"
"written; the caller has checked that the record fits the journal (Journal.append_then_send).");

static PyObject *
py_order_step(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "order_step takes 9 arguments");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    unsigned long long sequence = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long long timestamp = PyLong_AsUnsignedLongLong(args[3]);
    long fd = PyLong_AsLong(args[4]);
    long frame_id = PyLong_AsLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (step_record.size == 0) {
        PyErr_SetString(PyExc_RuntimeError, "no step record: call set_step_record() first");
        return NULL;
    }
    if (frame_id < 0 || frame_id >= N_STEP_FRAMES || step_frames[frame_id].size == 0) {
        PyErr_Format(PyExc_ValueError, "no step frame %ld: call set_step_frame() first", frame_id);
        return NULL;
    }
    const Shape *frame = &step_frames[frame_id];
    Py_buffer journal, out;
    if (PyObject_GetBuffer(args[0], &journal, PyBUF_WRITABLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[5], &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&journal);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t end = offset + header_size + step_record.size;
    unsigned char payload[MAX_SHAPE_SIZE];
    if (offset < 0 || end > journal.len) {
        PyErr_SetString(PyExc_ValueError, "journal record does not fit the buffer");
        goto done;
    }
    if (out.len < frame->size) {
        PyErr_Format(PyExc_ValueError, "the send buffer holds %zd bytes, the frame is %zd", out.len, frame->size);
        goto done;
    }
    if (!fits(sequence, field_width[F_SEQUENCE]) || !fits(timestamp, field_width[F_TIMESTAMP])) {
        PyErr_SetString(PyExc_ValueError, "a value does not fit its field of the record header");
        goto done;
    }
    /* every value checked (payload staged, frame packed) before the journal's bytes change */
    if (fill_shape(&step_record, args[7], payload, "record") < 0 || fill_shape(frame, args[8], out.buf, "frame") < 0)
        goto done;
    unsigned char *p = (unsigned char *)journal.buf + offset;
    memset(p + 4, 0, (size_t)(header_size - 4));
    store_le(p + field_offset[F_LENGTH], (uint64_t)step_record.size, field_width[F_LENGTH]);
    store_le(p + field_offset[F_SEQUENCE], sequence, field_width[F_SEQUENCE]);
    store_le(p + field_offset[F_TIMESTAMP], timestamp, field_width[F_TIMESTAMP]);
    store_le(p + field_offset[F_TYPE], step_record_type, field_width[F_TYPE]);
    memcpy(p + header_size, payload, (size_t)step_record.size);
    uint32_t crc = crc_update(0xFFFFFFFFu, p + 4, (size_t)(header_size - 4 + step_record.size)) ^ 0xFFFFFFFFu;
    memcpy(p, &crc, 4);                    /* the record is complete: only now may its bytes leave */
    if (fd < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    last_handed_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    /* as socket.send on a non-blocking socket: EINTR tried again, EAGAIN is 0 bytes taken (MSG_NOSIGNAL:
     * a closed peer is EPIPE, as under Python, which ignores SIGPIPE); the GIL is kept (it does not block) */
    ssize_t sent;
    do {
        sent = send((int)fd, out.buf, (size_t)frame->size, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0)
        sent = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    result = PyLong_FromSsize_t(sent);
done:
    PyBuffer_Release(&journal);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(handed_ns_doc,
"handed_ns() -> int\n\nThe monotonic clock (time.perf_counter_ns) read just before order_step()'s last send.");

static PyObject *
py_handed_ns(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(last_handed_ns);
}

static PyMethodDef methods[] = {
    {"crc32c", py_crc32c, METH_VARARGS, crc32c_doc},
    {"set_layout", py_set_layout, METH_VARARGS, set_layout_doc},
    {"append", py_append, METH_VARARGS, append_doc},
    {"set_step_record", py_set_step_record, METH_VARARGS, set_step_record_doc},
    {"set_step_frame", py_set_step_frame, METH_VARARGS, set_step_frame_doc},
    {"order_step", (PyCFunction)(void (*)(void))py_order_step, METH_FASTCALL, order_step_doc},
    {"handed_ns", py_handed_ns, METH_NOARGS, handed_ns_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.oms._journal_fast",
    "CRC-32C and the journal's record append, in C (see journal.py and journal_format.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__journal_fast(void)
{
    build_tables();
    return PyModule_Create(&module);
}
