/* The per-packet fan-out in native code: one call per frame and track sends that
 * frame to every player of the track.
 *
 * Per player and packet: the RTP header rewritten (SSRC, payload type, sequence
 * number, timestamp, MID extension), SRTP-protected on OpenSSL's ciphers (the
 * player's own outbound keys, derived from its DTLS handshake), and the frame's packets
 * sent with one sendmmsg per player, all without the GIL. A frame is handed to a
 * small pool of worker threads (one per usable core) and the caller goes on; the
 * workers split its players between them. NACK history is kept per player as references to
 * the frame's shared payloads (reference counted atomically, no copies).
 *
 * Types:
 *   Sender  one player's outbound SRTP session and UDP socket (its own dup of the
 *           ICE socket's descriptor), shared by that player's tracks; no socket:
 *           packets are handed back (a TURN player, whose send path awaits).
 *   Frame   one encoded frame's RTP payloads, packed once per stream.
 *   Slot    one player's track: RTP sequence and timestamp spaces, counters,
 *           keyframe wait, NACK history.
 *   Fanout  one track's attached slots; send(frame) is the per-frame call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HISTORY 256     /* packets per slot remembered for NACK (~2 s of video) */
#define BATCH 64        /* packets built and sent per sendmmsg */
#define BUFFER 1536     /* one packet: header, extension, payload, SRTP trailer */
#define SRTP_MAX_TRAILER 16 /* AES-GCM's tag; HMAC-SHA1-80's is 10 bytes */
#define MAX_EXTENSION 64
#define CHUNK 16        /* slots a worker takes at a time */
#define MAX_THREADS 64
#define NTP_EPOCH_OFFSET 2208988800ULL
#define GSO_LIMIT 60000 /* bytes in one GSO send (the kernel takes up to 64 KiB) */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h: send a buffer as equal-sized datagrams (UDP GSO) */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* ------------------------------------------------------------------ frames */

typedef struct {
    atomic_int refs;
    uint32_t timestamp;
    int keyframe;
    long long epoch;
    int count;
    size_t total;
    size_t *offsets;      /* count + 1 entries into bytes */
    unsigned char *bytes;
} FrameData;

static void frame_data_retain(FrameData *data) { atomic_fetch_add(&data->refs, 1); }

static void frame_data_release(FrameData *data) {
    if (data != NULL && atomic_fetch_sub(&data->refs, 1) == 1) {
        free(data);
    }
}

typedef struct {
    PyObject_HEAD
    FrameData *data;
} FrameObject;

static PyTypeObject FrameType;

static int Frame_init(FrameObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"payloads", "timestamp", "keyframe", "epoch", NULL};
    PyObject *payloads;
    unsigned long long timestamp;
    int keyframe;
    long long epoch;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OKpL", kwlist, &payloads, &timestamp,
                                     &keyframe, &epoch)) {
        return -1;
    }
    PyObject *seq = PySequence_Fast(payloads, "payloads must be a sequence of bytes");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    size_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(item) > BUFFER - 12 - MAX_EXTENSION - SRTP_MAX_TRAILER) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "an RTP payload is too large for one packet");
            return -1;
        }
        total += (size_t)PyBytes_GET_SIZE(item);
    }
    FrameData *data = malloc(sizeof(FrameData) + sizeof(size_t) * (size_t)(count + 1) + total);
    if (data == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    atomic_init(&data->refs, 1);
    data->timestamp = (uint32_t)(timestamp & 0xFFFFFFFFULL);
    data->keyframe = keyframe;
    data->epoch = epoch;
    data->count = (int)count;
    data->total = total;
    data->offsets = (size_t *)(data + 1);
    data->bytes = (unsigned char *)(data->offsets + count + 1);
    size_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        data->offsets[i] = at;
        memcpy(data->bytes + at, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
        at += (size_t)PyBytes_GET_SIZE(item);
    }
    data->offsets[count] = at;
    Py_DECREF(seq);
    frame_data_release(self->data);
    self->data = data;
    return 0;
}

static void Frame_dealloc(FrameObject *self) {
    frame_data_release(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Frame_get_packets(FrameObject *self, void *closure) {
    return PyLong_FromLong(self->data ? self->data->count : 0);
}

static PyGetSetDef Frame_getset[] = {
    {"packets", (getter)Frame_get_packets, NULL, "RTP packets in the frame", NULL},
    {NULL},
};

static PyTypeObject FrameType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Frame",
    .tp_basicsize = sizeof(FrameObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One encoded frame's RTP payloads, packed once for every player.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Frame_init,
    .tp_dealloc = (destructor)Frame_dealloc,
    .tp_getset = Frame_getset,
};

/* ------------------------------------------------------------------ SRTP */

/* Outbound SRTP (RFC 3711) and its AES-GCM mode (RFC 7714) for the profiles DTLS-SRTP
 * negotiates with aiortc and browsers, on OpenSSL's AES-CTR, AES-GCM and HMAC-SHA1.
 * Debian's libsrtp 2 is built on NSS, whose set-up for every packet made protecting
 * take about twice OpenSSL's time (docs/media.md); only the framing is ours: session
 * keys from the master key, the IV from SSRC, rollover counter and sequence
 * number, and the tag. pylibsrtp (aiortc's own binding) decrypts it in the tests. */

#define PROFILE_AES128_CM_SHA1_80 1
#define PROFILE_AEAD_AES_128_GCM 7
#define PROFILE_AEAD_AES_256_GCM 8

typedef struct {
    int gcm;
    EVP_CIPHER_CTX *cipher; /* keyed once; each packet sets its own IV */
    EVP_MAC_CTX *mac;       /* HMAC-SHA1 keyed with the session's auth key (AES-CM only) */
    unsigned char salt[14]; /* the session salt: 14 bytes (AES-CM), 12 (AES-GCM) */
} Srtp;

/* The master key and salt lengths of a profile; 0 if it is not one we protect with. */
static int srtp_lengths(int profile, int *key, int *salt) {
    switch (profile) {
    case PROFILE_AES128_CM_SHA1_80:
        *key = 16, *salt = 14;
        return 1;
    case PROFILE_AEAD_AES_128_GCM:
        *key = 16, *salt = 12;
        return 1;
    case PROFILE_AEAD_AES_256_GCM:
        *key = 32, *salt = 12;
        return 1;
    }
    return 0;
}

/* RFC 3711 4.3.3's key derivation (AES-CM PRF, key derivation rate 0): length bytes
 * of session material for label. A 96-bit GCM master salt is padded with zeros to
 * the PRF's 112 bits (RFC 7714 section 11, as libsrtp does). */
static int srtp_derive(const unsigned char *master, int key_length, const unsigned char *salt,
                       int salt_length, unsigned char label, unsigned char *out, int length) {
    unsigned char iv[16] = {0}, zeros[32] = {0};
    memcpy(iv, salt, (size_t)salt_length);
    iv[7] ^= label;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int written = 0;
    int ok = ctx != NULL &&
             EVP_EncryptInit_ex(ctx, key_length == 32 ? EVP_aes_256_ctr() : EVP_aes_128_ctr(),
                                NULL, master, iv) &&
             EVP_EncryptUpdate(ctx, out, &written, zeros, length) && written == length;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

static void srtp_free(Srtp *srtp) {
    EVP_CIPHER_CTX_free(srtp->cipher);
    EVP_MAC_CTX_free(srtp->mac);
    srtp->cipher = NULL;
    srtp->mac = NULL;
    OPENSSL_cleanse(srtp->salt, sizeof(srtp->salt));
}

/* Session keys for master (key then salt, as DTLS-SRTP exports them); 0 on success. */
static int srtp_init_session(Srtp *srtp, int profile, const unsigned char *master) {
    int key_length, salt_length;
    srtp_lengths(profile, &key_length, &salt_length);
    const unsigned char *master_salt = master + key_length;
    unsigned char key[32], auth[20];
    srtp->gcm = profile != PROFILE_AES128_CM_SHA1_80;
    int failed = srtp_derive(master, key_length, master_salt, salt_length, 0x00, key,
                             key_length) ||
                 srtp_derive(master, key_length, master_salt, salt_length, 0x02, srtp->salt,
                             salt_length);
    const EVP_CIPHER *cipher =
        srtp->gcm ? (key_length == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm()) : EVP_aes_128_ctr();
    srtp->cipher = EVP_CIPHER_CTX_new();
    failed = failed || srtp->cipher == NULL ||
             !EVP_EncryptInit_ex(srtp->cipher, cipher, NULL, key, NULL);
    if (!failed && !srtp->gcm) {
        EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        srtp->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
        EVP_MAC_free(hmac);
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0),
                               OSSL_PARAM_construct_end()};
        failed = srtp->mac == NULL ||
                 srtp_derive(master, key_length, master_salt, salt_length, 0x01, auth, 20) ||
                 !EVP_MAC_init(srtp->mac, auth, sizeof(auth), params);
    }
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(auth, sizeof(auth));
    if (failed) {
        srtp_free(srtp);
    }
    return failed ? -1 : 0;
}

/* The length of an RTP packet's header (fixed part, CSRCs, extension); -1 if it has none. */
static int rtp_header_length(const unsigned char *p, int length) {
    if (length < 12) {
        return -1;
    }
    int n = 12 + 4 * (p[0] & 0x0F);
    if (p[0] & 0x10) {
        if (length < n + 4) {
            return -1;
        }
        n += 4 + 4 * ((p[n + 2] << 8) | p[n + 3]);
    }
    return n <= length ? n : -1;
}

/* Protect one RTP packet in place, its trailer written after it (BUFFER leaves room),
 * sent in the rollover counter roc; returns the protected length, 0 on failure. */
static int srtp_protect_packet(Srtp *srtp, unsigned char *p, int length, uint32_t roc) {
    int header = rtp_header_length(p, length);
    if (header < 0 || srtp->cipher == NULL) {
        return 0;
    }
    int n;
    if (srtp->gcm) {
        /* IV = salt XOR (00 00 | SSRC | ROC | SEQ), the header authenticated (RFC 7714 8.1) */
        unsigned char iv[12] = {0, 0, p[8], p[9], p[10], p[11], (unsigned char)(roc >> 24),
                                (unsigned char)(roc >> 16), (unsigned char)(roc >> 8),
                                (unsigned char)roc, p[2], p[3]};
        for (int i = 0; i < 12; i++) {
            iv[i] ^= srtp->salt[i];
        }
        if (!EVP_EncryptInit_ex(srtp->cipher, NULL, NULL, NULL, iv) ||
            !EVP_EncryptUpdate(srtp->cipher, NULL, &n, p, header) ||
            !EVP_EncryptUpdate(srtp->cipher, p + header, &n, p + header, length - header) ||
            !EVP_EncryptFinal_ex(srtp->cipher, p + length, &n) ||
            !EVP_CIPHER_CTX_ctrl(srtp->cipher, EVP_CTRL_GCM_GET_TAG, 16, p + length)) {
            return 0;
        }
        return length + 16;
    }
    /* IV = salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16 (RFC 3711 4.1.1) */
    unsigned char iv[16] = {0, 0, 0, 0, p[8], p[9], p[10], p[11], (unsigned char)(roc >> 24),
                            (unsigned char)(roc >> 16), (unsigned char)(roc >> 8),
                            (unsigned char)roc, p[2], p[3], 0, 0};
    for (int i = 0; i < 14; i++) {
        iv[i] ^= srtp->salt[i];
    }
    unsigned char rollover[4] = {(unsigned char)(roc >> 24), (unsigned char)(roc >> 16),
                                 (unsigned char)(roc >> 8), (unsigned char)roc};
    unsigned char digest[EVP_MAX_MD_SIZE];
    size_t digest_length = 0;
    if (!EVP_EncryptInit_ex(srtp->cipher, NULL, NULL, NULL, iv) ||
        !EVP_EncryptUpdate(srtp->cipher, p + header, &n, p + header, length - header) ||
        !EVP_MAC_init(srtp->mac, NULL, 0, NULL) || !EVP_MAC_update(srtp->mac, p, (size_t)length) ||
        !EVP_MAC_update(srtp->mac, rollover, sizeof(rollover)) ||
        !EVP_MAC_final(srtp->mac, digest, &digest_length, sizeof(digest)) || digest_length < 10) {
        return 0;
    }
    memcpy(p + length, digest, 10); /* HMAC-SHA1 truncated to 80 bits */
    return length + 10;
}

/* ------------------------------------------------------------------ senders */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    Srtp srtp;
    int keyed; /* srtp holds session keys */
    int fd; /* our own descriptor of the player's socket; -1: hand packets back */
    int gso; /* UDP GSO: 1 while the kernel takes it for this socket */
    struct sockaddr_storage address;
    socklen_t address_length;
} SenderObject;

static PyTypeObject SenderType;

static int parse_address(const char *host, int port, struct sockaddr_storage *out,
                         socklen_t *length) {
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *length = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *length = sizeof(*v6);
        return 0;
    }
    return -1;
}

static PyObject *Sender_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    SenderObject *self = (SenderObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        pthread_mutex_init(&self->lock, NULL);
        self->keyed = 0;
        self->fd = -1;
        self->gso = 1;
    }
    return (PyObject *)self;
}

static int Sender_init(SenderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "key", "fd", "address", NULL};
    int profile, fd;
    Py_buffer key;
    PyObject *address;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*iO", kwlist, &profile, &key, &fd,
                                     &address)) {
        return -1;
    }
    if (self->keyed) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_RuntimeError, "a Sender is initialised once");
        return -1;
    }
    int key_length, salt_length;
    if (!srtp_lengths(profile, &key_length, &salt_length)) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError,
                     "SRTP profile %d is not supported (AES-CM-128 + HMAC-SHA1-80: 1, "
                     "AES-128-GCM: 7, AES-256-GCM: 8)",
                     profile);
        return -1;
    }
    if (key.len != key_length + salt_length) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "SRTP profile %d needs a %d-byte key and salt, got %zd",
                     profile, key_length + salt_length, key.len);
        return -1;
    }
    int failed = srtp_init_session(&self->srtp, profile, key.buf);
    PyBuffer_Release(&key);
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not set up the SRTP session keys");
        return -1;
    }
    self->keyed = 1;
    if (fd >= 0) {
        const char *host;
        int port;
        if (address == Py_None) {
            self->address_length = 0; /* a connected socket */
        } else if (!PyArg_ParseTuple(address, "si", &host, &port)) {
            return -1;
        } else if (parse_address(host, port, &self->address, &self->address_length) != 0) {
            PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
            return -1;
        }
        self->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (self->fd < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    return 0;
}

static void sender_close_locked(SenderObject *self) {
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
}

static PyObject *Sender_close(SenderObject *self, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    sender_close_locked(self);
    srtp_free(&self->srtp);
    self->keyed = 0;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static void Sender_dealloc(SenderObject *self) {
    sender_close_locked(self);
    srtp_free(&self->srtp);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Sender_get_sends(SenderObject *self, void *closure) {
    return PyBool_FromLong(self->fd >= 0);
}

static PyMethodDef Sender_methods[] = {
    {"close", (PyCFunction)Sender_close, METH_NOARGS,
     "Stop sending: the socket descriptor and SRTP session are released."},
    {NULL},
};

static PyGetSetDef Sender_getset[] = {
    {"sends", (getter)Sender_get_sends, NULL, "whether packets go to a socket here", NULL},
    {NULL},
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Sender",
    .tp_basicsize = sizeof(SenderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One player's outbound SRTP session and UDP socket.",
    .tp_new = Sender_new,
    .tp_init = (initproc)Sender_init,
    .tp_dealloc = (destructor)Sender_dealloc,
    .tp_methods = Sender_methods,
    .tp_getset = Sender_getset,
};

/* ------------------------------------------------------------------ slots */

typedef struct {
    FrameData *frame;
    int index;
    uint16_t seq;
    uint32_t roc; /* the rollover counter it was sent in: a retransmission keeps it */
    uint8_t marked;
    uint32_t timestamp;
} Kept;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    SenderObject *sender;
    uint32_t ssrc;
    uint8_t payload_type;
    uint8_t first_byte;
    unsigned char extension[MAX_EXTENSION];
    int extension_length;
    uint32_t clock_rate;
    uint16_t seq;
    uint32_t roc; /* SRTP rollover counter: times seq wrapped */
    uint32_t offset;
    long long epoch;
    uint32_t last_timestamp;
    double last_sent;     /* CLOCK_MONOTONIC seconds */
    uint64_t last_sent_ntp;
    int waiting;          /* for a keyframe */
    int attached;
    unsigned long long packets, octets, frames, overflows;
    Kept history[HISTORY];
} SlotObject;

static PyTypeObject SlotType;

static double monotonic_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static uint64_t ntp_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seconds = (uint64_t)now.tv_sec + NTP_EPOCH_OFFSET;
    uint64_t fraction = ((uint64_t)now.tv_nsec << 32) / 1000000000ULL;
    return (seconds << 32) | fraction;
}

static PyObject *Slot_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    SlotObject *self = (SlotObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        pthread_mutex_init(&self->lock, NULL);
        self->waiting = 1;
    }
    return (PyObject *)self;
}

static int Slot_init(SlotObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sender",   "ssrc",      "payload_type", "extension",
                             "sequence", "timestamp", "clock_rate",   NULL};
    PyObject *sender;
    unsigned int ssrc, payload_type, sequence, timestamp, clock_rate;
    Py_buffer extension;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!IIy*III", kwlist, &SenderType, &sender,
                                     &ssrc, &payload_type, &extension, &sequence, &timestamp,
                                     &clock_rate)) {
        return -1;
    }
    if (self->sender != NULL) {
        PyBuffer_Release(&extension);
        PyErr_SetString(PyExc_RuntimeError, "a Slot is initialised once");
        return -1;
    }
    if (extension.len > MAX_EXTENSION || extension.len % 4 != 0 || payload_type > 127 ||
        sequence > 0xFFFF || clock_rate == 0) {
        PyBuffer_Release(&extension);
        PyErr_SetString(PyExc_ValueError,
                        "bad slot: extension must be whole 32-bit words (at most 64 bytes), "
                        "payload type 0-127, sequence 0-65535, clock rate above 0");
        return -1;
    }
    memcpy(self->extension, extension.buf, (size_t)extension.len);
    self->extension_length = (int)extension.len;
    PyBuffer_Release(&extension);
    Py_INCREF(sender);
    self->sender = (SenderObject *)sender;
    self->ssrc = ssrc;
    self->payload_type = (uint8_t)payload_type;
    self->first_byte = self->extension_length ? 0x90 : 0x80;
    self->clock_rate = clock_rate;
    self->seq = (uint16_t)sequence;
    self->last_timestamp = timestamp;
    return 0;
}

static void slot_forget(SlotObject *self) {
    for (int i = 0; i < HISTORY; i++) {
        frame_data_release(self->history[i].frame);
        self->history[i].frame = NULL;
    }
}

static void Slot_dealloc(SlotObject *self) {
    slot_forget(self);
    Py_XDECREF(self->sender);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Per-thread scratch: packet buffers and the sendmmsg vectors. */
typedef struct {
    unsigned char buffers[BATCH][BUFFER];
    int lengths[BATCH];
    uint32_t rocs[BATCH];
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
} Scratch;

static __thread Scratch *thread_scratch;

static Scratch *scratch(void) {
    if (thread_scratch == NULL) {
        thread_scratch = calloc(1, sizeof(Scratch));
    }
    return thread_scratch;
}

/* Write one packet's header, extension and payload into buf; returns its length. */
static int build(SlotObject *slot, unsigned char *buf, uint16_t seq, uint8_t marked,
                 uint32_t timestamp, const unsigned char *payload, size_t size) {
    buf[0] = slot->first_byte;
    buf[1] = marked;
    buf[2] = (unsigned char)(seq >> 8);
    buf[3] = (unsigned char)seq;
    buf[4] = (unsigned char)(timestamp >> 24);
    buf[5] = (unsigned char)(timestamp >> 16);
    buf[6] = (unsigned char)(timestamp >> 8);
    buf[7] = (unsigned char)timestamp;
    buf[8] = (unsigned char)(slot->ssrc >> 24);
    buf[9] = (unsigned char)(slot->ssrc >> 16);
    buf[10] = (unsigned char)(slot->ssrc >> 8);
    buf[11] = (unsigned char)slot->ssrc;
    memcpy(buf + 12, slot->extension, (size_t)slot->extension_length);
    memcpy(buf + 12 + slot->extension_length, payload, size);
    return 12 + slot->extension_length + (int)size;
}

/* Protect count packets in place; a packet that cannot be protected gets length 0. */
static void protect(SenderObject *sender, Scratch *s, int count) {
    for (int i = 0; i < count; i++) {
        s->lengths[i] = sender->keyed ? srtp_protect_packet(&sender->srtp, s->buffers[i],
                                                            s->lengths[i], s->rocs[i])
                                      : 0;
    }
}

/* A frame's packets as one UDP GSO send when they allow it (all the same size but
 * a shorter last one, as the packetisers make them): the kernel builds the
 * datagrams. Returns 1 if sent, 0 to send them one by one, -1 when full. */
static int transmit_gso(SenderObject *sender, Scratch *s, int count) {
    if (!sender->gso || count < 2) {
        return 0;
    }
    int size = s->lengths[0], total = 0;
    for (int i = 0; i < count; i++) {
        int length = s->lengths[i];
        if (length == 0 || length > size || (i < count - 1 && length != size)) {
            return 0;
        }
        total += length;
        s->vectors[i].iov_base = s->buffers[i];
        s->vectors[i].iov_len = (size_t)length;
    }
    if (total > GSO_LIMIT) {
        return 0;
    }
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_name = sender->address_length ? (void *)&sender->address : NULL;
    message.msg_namelen = sender->address_length;
    message.msg_iov = s->vectors;
    message.msg_iovlen = (size_t)count;
    message.msg_control = control.buf;
    message.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_UDP;
    cmsg->cmsg_type = UDP_SEGMENT;
    cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t segment = (uint16_t)size;
    memcpy(CMSG_DATA(cmsg), &segment, sizeof(segment));
    for (;;) {
        if (sendmsg(sender->fd, &message, MSG_DONTWAIT) >= 0) {
            return 1;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            return -1;
        }
        sender->gso = 0; /* not for this socket (not UDP, or no GSO): one by one from now on */
        return 0;
    }
}

/* Send count protected packets; returns 0, or -1 when the socket is full. */
static int transmit(SenderObject *sender, Scratch *s, int count) {
    int batched = transmit_gso(sender, s, count);
    if (batched != 0) {
        return batched > 0 ? 0 : -1;
    }
    int queued = 0;
    for (int i = 0; i < count; i++) {
        if (s->lengths[i] == 0) {
            continue;
        }
        s->vectors[queued].iov_base = s->buffers[i];
        s->vectors[queued].iov_len = (size_t)s->lengths[i];
        memset(&s->messages[queued].msg_hdr, 0, sizeof(struct msghdr));
        s->messages[queued].msg_hdr.msg_name =
            sender->address_length ? (void *)&sender->address : NULL;
        s->messages[queued].msg_hdr.msg_namelen = sender->address_length;
        s->messages[queued].msg_hdr.msg_iov = &s->vectors[queued];
        s->messages[queued].msg_hdr.msg_iovlen = 1;
        queued++;
    }
    int sent = 0;
    while (sent < queued) {
        int n = sendmmsg(sender->fd, s->messages + sent, (unsigned int)(queued - sent),
                         MSG_DONTWAIT);
        if (n > 0) {
            sent += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            return -1;
        } else {
            sent += 1; /* an error for this datagram (e.g. ICMP unreachable): skip it */
        }
    }
    return 0;
}

typedef struct {
    unsigned long long bytes;
    int overflowed;
} Outcome;

/* The slot's RTP timestamp space follows a new upstream: its first frame comes
 * the wall-clock time since the last one sent after it. */
static void rebase(SlotObject *slot, FrameData *frame) {
    uint32_t elapsed = 0;
    if (slot->epoch != 0) {
        double ticks = round((monotonic_now() - slot->last_sent) * (double)slot->clock_rate);
        elapsed = ticks < 1.0 ? 1U : (uint32_t)fmin(ticks, 4294967295.0);
    }
    slot->offset = slot->last_timestamp + elapsed - frame->timestamp;
    slot->epoch = frame->epoch;
}

/* Build (and with a socket, send) one frame for one slot; the slot is locked.
 * out (may be NULL) receives protected packets when the sender has no socket. */
static int slot_frame(SlotObject *slot, FrameData *frame, Outcome *outcome, PyObject **out) {
    SenderObject *sender = slot->sender;
    Scratch *s = scratch();
    if (s == NULL) {
        return -1;
    }
    if (frame->epoch != slot->epoch) {
        rebase(slot, frame);
    }
    uint32_t timestamp = frame->timestamp + slot->offset;
    int last = frame->count - 1;
    pthread_mutex_lock(&sender->lock);
    for (int first = 0; first < frame->count; first += BATCH) {
        int count = frame->count - first < BATCH ? frame->count - first : BATCH;
        for (int k = 0; k < count; k++) {
            int index = first + k;
            const unsigned char *payload = frame->bytes + frame->offsets[index];
            size_t size = frame->offsets[index + 1] - frame->offsets[index];
            uint8_t marked = slot->payload_type | (index == last ? 0x80 : 0);
            s->lengths[k] = build(slot, s->buffers[k], slot->seq, marked, timestamp, payload, size);
            s->rocs[k] = slot->roc;
            Kept *kept = &slot->history[slot->seq % HISTORY];
            frame_data_retain(frame);
            frame_data_release(kept->frame);
            kept->frame = frame;
            kept->index = index;
            kept->seq = slot->seq;
            kept->roc = slot->roc;
            kept->marked = marked;
            kept->timestamp = timestamp;
            slot->seq = (uint16_t)(slot->seq + 1);
            slot->roc += slot->seq == 0;
            slot->packets++;
            slot->octets += size;
        }
        protect(sender, s, count);
        for (int k = 0; k < count; k++) {
            outcome->bytes += (unsigned long long)s->lengths[k];
        }
        if (sender->fd >= 0) {
            if (transmit(sender, s, count) != 0) {
                slot->waiting = 1;
                slot->overflows++;
                outcome->overflowed++;
                break;
            }
        } else if (out != NULL) {
            for (int k = 0; k < count; k++) {
                if (s->lengths[k] > 0) {
                    PyObject *packet =
                        PyBytes_FromStringAndSize((const char *)s->buffers[k], s->lengths[k]);
                    if (packet == NULL || PyList_Append(*out, packet) != 0) {
                        Py_XDECREF(packet);
                        pthread_mutex_unlock(&sender->lock);
                        return -1;
                    }
                    Py_DECREF(packet);
                }
            }
        }
    }
    pthread_mutex_unlock(&sender->lock);
    slot->frames++;
    slot->last_timestamp = timestamp;
    slot->last_sent = monotonic_now();
    slot->last_sent_ntp = ntp_now();
    return 0;
}

/* A frame offered to an attached slot: skipped while it waits for a keyframe. */
static void slot_offer(SlotObject *slot, FrameData *frame, Outcome *outcome) {
    pthread_mutex_lock(&slot->lock);
    if (slot->attached) {
        if (slot->waiting && frame->keyframe) {
            slot->waiting = 0;
        }
        if (!slot->waiting) {
            slot_frame(slot, frame, outcome, NULL);
        }
    }
    pthread_mutex_unlock(&slot->lock);
}

static PyObject *Slot_protect(SlotObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &FrameType)) {
        PyErr_SetString(PyExc_TypeError, "protect() takes a Frame");
        return NULL;
    }
    if (self->sender->fd >= 0) {
        PyErr_SetString(PyExc_ValueError, "this slot's sender sends by itself");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    Outcome outcome = {0, 0};
    pthread_mutex_lock(&self->lock);
    int failed = slot_frame(self, ((FrameObject *)arg)->data, &outcome, &out);
    pthread_mutex_unlock(&self->lock);
    if (failed) {
        Py_DECREF(out);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    return out;
}

static PyObject *Slot_retransmit(SlotObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "retransmit() takes sequence numbers");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Scratch *s = scratch();
    if (s == NULL) {
        Py_DECREF(seq);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    pthread_mutex_lock(&self->lock);
    pthread_mutex_lock(&self->sender->lock);
    int count = 0;
    for (Py_ssize_t i = 0; i < n && count < BATCH; i++) {
        long wanted = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (wanted == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            continue;
        }
        Kept *kept = &self->history[(uint16_t)wanted % HISTORY];
        if (kept->frame == NULL || kept->seq != (uint16_t)wanted || wanted < 0 || wanted > 0xFFFF) {
            continue;
        }
        FrameData *frame = kept->frame;
        size_t size = frame->offsets[kept->index + 1] - frame->offsets[kept->index];
        s->lengths[count] = build(self, s->buffers[count], kept->seq, kept->marked,
                                  kept->timestamp, frame->bytes + frame->offsets[kept->index],
                                  size);
        s->rocs[count] = kept->roc;
        count++;
    }
    protect(self->sender, s, count);
    int failed = 0;
    if (self->sender->fd >= 0) {
        transmit(self->sender, s, count);
    } else {
        for (int k = 0; k < count && !failed; k++) {
            if (s->lengths[k] > 0) {
                PyObject *packet =
                    PyBytes_FromStringAndSize((const char *)s->buffers[k], s->lengths[k]);
                failed = packet == NULL || PyList_Append(out, packet) != 0;
                Py_XDECREF(packet);
            }
        }
    }
    pthread_mutex_unlock(&self->sender->lock);
    pthread_mutex_unlock(&self->lock);
    Py_DECREF(seq);
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *Slot_wait_for_keyframe(SlotObject *self, PyObject *unused) {
    pthread_mutex_lock(&self->lock);
    self->waiting = 1;
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

#define SLOT_COUNTER(name, expr, make)                                        \
    static PyObject *Slot_get_##name(SlotObject *self, void *closure) {       \
        pthread_mutex_lock(&self->lock);                                      \
        unsigned long long value = (unsigned long long)(expr);                \
        pthread_mutex_unlock(&self->lock);                                    \
        return make(value);                                                   \
    }

SLOT_COUNTER(packets, self->packets, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(octets, self->octets, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(frames, self->frames, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(overflows, self->overflows, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(sequence, self->seq, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(last_timestamp, self->last_timestamp, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(last_sent_ntp, self->last_sent_ntp, PyLong_FromUnsignedLongLong)
SLOT_COUNTER(waiting_for_keyframe, self->waiting, PyBool_FromLong)

static PyMethodDef Slot_methods[] = {
    {"protect", (PyCFunction)Slot_protect, METH_O,
     "The protected packets of one frame, for a sender without a socket (TURN)."},
    {"retransmit", (PyCFunction)Slot_retransmit, METH_O,
     "Send the kept packets with these sequence numbers again (NACK); without a socket, "
     "return them protected."},
    {"wait_for_keyframe", (PyCFunction)Slot_wait_for_keyframe, METH_NOARGS,
     "Send nothing more until a keyframe."},
    {NULL},
};

static PyGetSetDef Slot_getset[] = {
    {"packets", (getter)Slot_get_packets, NULL, "RTP packets sent", NULL},
    {"octets", (getter)Slot_get_octets, NULL, "payload octets sent (sender reports)", NULL},
    {"frames", (getter)Slot_get_frames, NULL, "frames sent", NULL},
    {"overflows", (getter)Slot_get_overflows, NULL, "times the socket was full", NULL},
    {"sequence", (getter)Slot_get_sequence, NULL, "the next RTP sequence number", NULL},
    {"last_timestamp", (getter)Slot_get_last_timestamp, NULL, "RTP timestamp last sent", NULL},
    {"last_sent_ntp", (getter)Slot_get_last_sent_ntp, NULL, "NTP time of the last send", NULL},
    {"waiting_for_keyframe", (getter)Slot_get_waiting_for_keyframe, NULL,
     "whether nothing is sent until the next keyframe", NULL},
    {NULL},
};

static PyTypeObject SlotType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Slot",
    .tp_basicsize = sizeof(SlotObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One player's track: its RTP sequence and timestamp spaces and NACK history.",
    .tp_new = Slot_new,
    .tp_init = (initproc)Slot_init,
    .tp_dealloc = (destructor)Slot_dealloc,
    .tp_methods = Slot_methods,
    .tp_getset = Slot_getset,
};

/* ------------------------------------------------------------------ workers */

/* Frames are handed to the pool and the caller goes on: the event loop's thread
 * never waits for a fan-out, so ingest, RTCP and signalling keep their core while
 * the workers send. A job is one frame for one fan-out; the workers take CHUNK
 * slots of it at a time. A fan-out's jobs run in the order they were queued, the
 * next once every slot of the last is done, so each slot gets its frames in order
 * and a job's slot array is never changed under it (a Fanout changes it only with
 * none of its frames queued: fanout_drain); other fan-outs' jobs (other tracks and
 * streams) run meanwhile on the other workers. The pool is the process's and does not survive fork()
 * (nothing here forks; the bench's processes are spawned). */

typedef struct FanoutObject FanoutObject;

typedef struct Job {
    FanoutObject *fanout;
    FrameData *frame;
    long total;
    atomic_long next;
    unsigned long order; /* its place among its fan-out's jobs */
    int running;         /* workers inside it; under pool.lock */
    struct Job *after;
} Job;

#define QUEUE_LIMIT 32 /* frames queued at most; send() waits beyond (the loop falls behind) */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a job was queued or finished */
    Job *head, *tail;
    int queued;
    int threads;
    atomic_int started;
    clockid_t clocks[MAX_THREADS]; /* the workers' CPU clocks */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, 0, {0}};

struct FanoutObject {
    PyObject_HEAD
    SlotObject **slots; /* changed only under pool.lock with nothing queued */
    Py_ssize_t count;
    Py_ssize_t capacity;
    int queued;         /* its frames in the pool's queue; under pool.lock */
    unsigned long sent; /* its jobs finished (the next to run has order == sent); ditto */
    int draining;       /* callers waiting for the queue to drain: send() waits for them */
    atomic_ullong bytes; /* sent since the last report */
    atomic_int overflowed;
};

static void run_chunks(Job *job) {
    Outcome outcome = {0, 0};
    for (;;) {
        long begin = atomic_fetch_add(&job->next, CHUNK);
        if (begin >= job->total) {
            break;
        }
        long end = begin + CHUNK < job->total ? begin + CHUNK : job->total;
        for (long i = begin; i < end; i++) {
            slot_offer(job->fanout->slots[i], job->frame, &outcome);
        }
    }
    atomic_fetch_add(&job->fanout->bytes, outcome.bytes);
    atomic_fetch_add(&job->fanout->overflowed, outcome.overflowed);
}

/* A job is done (pool.lock held): out of the queue, its frame released; its
 * fan-out's next job may run. */
static void finish(Job *job) {
    Job **link = &pool.head, *before = NULL;
    while (*link != job) {
        before = *link;
        link = &before->after;
    }
    *link = job->after;
    if (pool.tail == job) {
        pool.tail = before;
    }
    pool.queued--;
    job->fanout->queued--;
    job->fanout->sent++;
    frame_data_release(job->frame);
    free(job);
    pthread_cond_broadcast(&pool.changed);
}

/* The oldest job with slots left to take whose fan-out has nothing earlier running. */
static Job *next_job(void) {
    for (Job *job = pool.head; job != NULL; job = job->after) {
        if (job->order == job->fanout->sent && atomic_load(&job->next) < job->total) {
            return job;
        }
    }
    return NULL;
}

static void *worker(void *unused) {
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        Job *job = next_job();
        if (job == NULL) {
            pthread_cond_wait(&pool.changed, &pool.lock);
            continue;
        }
        job->running++;
        pthread_mutex_unlock(&pool.lock);
        run_chunks(job);
        pthread_mutex_lock(&pool.lock);
        if (--job->running == 0) {
            finish(job); /* every chunk was taken (or it would not have left), none is running */
        }
    }
    return NULL;
}

static int usable_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return 1;
    }
    int count = CPU_COUNT(&set);
    return count < 1 ? 1 : count;
}

/* Start the pool once, with threads workers (0: one per usable core). */
static int start_pool(int threads) {
    if (atomic_load(&pool.started)) {
        return 0;
    }
    pthread_mutex_lock(&pool.lock);
    int error = 0;
    if (pool.threads == 0) {
        threads = threads < 1 ? usable_cores() : threads;
        threads = threads > MAX_THREADS ? MAX_THREADS : threads;
        for (int i = 0; i < threads && error == 0; i++) {
            pthread_t thread;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            error = pthread_create(&thread, &attr, worker, NULL);
            pthread_attr_destroy(&attr);
            if (error == 0 && pthread_getcpuclockid(thread, &pool.clocks[pool.threads]) == 0) {
                pool.threads++;
            }
        }
    }
    atomic_store(&pool.started, pool.threads > 0);
    pthread_mutex_unlock(&pool.lock);
    errno = error;
    return pool.threads > 0 ? 0 : -1;
}

/* The CPU seconds the workers have used, for the overload guard. */
static double pool_cpu_time(void) {
    pthread_mutex_lock(&pool.lock);
    int threads = pool.threads; /* clocks[] below it are set for good */
    pthread_mutex_unlock(&pool.lock);
    double total = 0.0;
    for (int i = 0; i < threads; i++) {
        struct timespec used;
        if (clock_gettime(pool.clocks[i], &used) == 0) {
            total += (double)used.tv_sec + (double)used.tv_nsec * 1e-9;
        }
    }
    return total;
}

/* Wait (pool.lock held) until none of the fan-out's frames are queued; frames sent
 * meanwhile (from another thread) wait for the drain, so it ends. */
static void fanout_drain(FanoutObject *fanout) {
    fanout->draining++;
    while (fanout->queued > 0) {
        pthread_cond_wait(&pool.changed, &pool.lock);
    }
    fanout->draining--;
    pthread_cond_broadcast(&pool.changed);
}

/* ------------------------------------------------------------------ fan-outs */

static PyObject *Fanout_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    return type->tp_alloc(type, 0);
}

static int Fanout_init(FanoutObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist)) {
        return -1;
    }
    return 0;
}

static void Fanout_dealloc(FanoutObject *self) {
    pthread_mutex_lock(&pool.lock);
    fanout_drain(self);
    pthread_mutex_unlock(&pool.lock);
    for (Py_ssize_t i = 0; i < self->count; i++) {
        self->slots[i]->attached = 0;
        Py_DECREF(self->slots[i]);
    }
    free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* (bytes sent, slots whose socket was full), as send(), flush() and add() return it. */
static PyObject *outcome_tuple(Outcome outcome) {
    return Py_BuildValue("(Ki)", outcome.bytes, outcome.overflowed);
}

/* What was sent since the last report: (bytes, slots whose socket was full). */
static PyObject *report(FanoutObject *self) {
    Outcome outcome = {atomic_exchange(&self->bytes, 0), atomic_exchange(&self->overflowed, 0)};
    return outcome_tuple(outcome);
}

static PyObject *Fanout_send(FanoutObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &FrameType)) {
        PyErr_SetString(PyExc_TypeError, "send() takes a Frame");
        return NULL;
    }
    if (start_pool(0) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    FrameData *frame = ((FrameObject *)arg)->data;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&pool.lock);
    while (pool.queued >= QUEUE_LIMIT || self->draining > 0) {
        pthread_cond_wait(&pool.changed, &pool.lock);
    }
    if (self->count > 0) { /* with nobody to send to there is nothing to keep in order */
        Job *job = calloc(1, sizeof(Job));
        failed = job == NULL;
        if (job != NULL) {
            job->fanout = self;
            job->frame = frame;
            frame_data_retain(frame);
            job->total = (long)self->count;
            job->order = self->sent + (unsigned long)self->queued;
            if (pool.tail != NULL) {
                pool.tail->after = job;
            } else {
                pool.head = job;
            }
            pool.tail = job;
            pool.queued++;
            self->queued++;
            pthread_cond_broadcast(&pool.changed);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    Py_END_ALLOW_THREADS
    return failed ? PyErr_NoMemory() : report(self);
}

static PyObject *Fanout_flush(FanoutObject *self, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&pool.lock);
    fanout_drain(self);
    pthread_mutex_unlock(&pool.lock);
    Py_END_ALLOW_THREADS
    return report(self);
}

static PyObject *Fanout_add(FanoutObject *self, PyObject *args) {
    PyObject *slot_arg, *frames_arg;
    if (!PyArg_ParseTuple(args, "O!O", &SlotType, &slot_arg, &frames_arg)) {
        return NULL;
    }
    SlotObject *slot = (SlotObject *)slot_arg;
    PyObject *frames = PySequence_Fast(frames_arg, "add() takes a sequence of Frames");
    if (frames == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(frames);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyObject_TypeCheck(PySequence_Fast_GET_ITEM(frames, i), &FrameType)) {
            Py_DECREF(frames);
            PyErr_SetString(PyExc_TypeError, "add() takes a sequence of Frames");
            return NULL;
        }
    }
    if (slot->sender->fd < 0) {
        Py_DECREF(frames);
        PyErr_SetString(PyExc_ValueError, "a slot whose sender has no socket cannot be attached");
        return NULL;
    }
    if (slot->attached) {
        Py_DECREF(frames);
        PyErr_SetString(PyExc_ValueError, "the slot is attached already");
        return NULL;
    }
    Py_INCREF(slot);
    Outcome outcome = {0, 0};
    int grown = 1;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&slot->lock);
    slot->attached = 1;
    slot->waiting = 1;
    pthread_mutex_unlock(&slot->lock);
    for (Py_ssize_t i = 0; i < n; i++) { /* the workers do not see it yet */
        slot_offer(slot, ((FrameObject *)PySequence_Fast_GET_ITEM(frames, i))->data, &outcome);
    }
    pthread_mutex_lock(&pool.lock);
    fanout_drain(self); /* its queued frames are in the GOP it was just sent */
    if (self->count == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 16;
        SlotObject **slots = realloc(self->slots, sizeof(SlotObject *) * (size_t)capacity);
        grown = slots != NULL;
        if (grown) {
            self->slots = slots;
            self->capacity = capacity;
        }
    }
    if (grown) {
        self->slots[self->count++] = slot;
    }
    pthread_mutex_unlock(&pool.lock);
    if (!grown) {
        pthread_mutex_lock(&slot->lock);
        slot->attached = 0;
        pthread_mutex_unlock(&slot->lock);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(frames);
    if (!grown) {
        Py_DECREF(slot);
        return PyErr_NoMemory();
    }
    return outcome_tuple(outcome);
}

static PyObject *Fanout_remove(FanoutObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &SlotType)) {
        PyErr_SetString(PyExc_TypeError, "remove() takes a Slot");
        return NULL;
    }
    SlotObject *slot = (SlotObject *)arg, *found = NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&pool.lock);
    fanout_drain(self);
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if (self->slots[i] == slot) {
            found = slot;
            self->slots[i] = self->slots[--self->count];
            break;
        }
    }
    pthread_mutex_unlock(&pool.lock);
    if (found != NULL) {
        pthread_mutex_lock(&slot->lock);
        slot->attached = 0;
        pthread_mutex_unlock(&slot->lock);
    }
    Py_END_ALLOW_THREADS
    if (found != NULL) {
        Py_DECREF(found);
    }
    return PyBool_FromLong(found != NULL);
}

static PyObject *Fanout_wait_for_keyframe(FanoutObject *self, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&pool.lock);
    fanout_drain(self); /* frames queued before stay sent, as they came */
    for (Py_ssize_t i = 0; i < self->count; i++) {
        pthread_mutex_lock(&self->slots[i]->lock);
        self->slots[i]->waiting = 1;
        pthread_mutex_unlock(&self->slots[i]->lock);
    }
    pthread_mutex_unlock(&pool.lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static Py_ssize_t Fanout_len(FanoutObject *self) { return self->count; }

static PyMethodDef Fanout_methods[] = {
    {"send", (PyCFunction)Fanout_send, METH_O,
     "Queue a frame for every attached slot (the workers send it; this returns at once) and "
     "report what was sent since the last report: (bytes, slots whose socket was full)."},
    {"flush", (PyCFunction)Fanout_flush, METH_NOARGS,
     "Wait until this fan-out's queued frames are sent; report as send() does."},
    {"add", (PyCFunction)Fanout_add, METH_VARARGS,
     "Attach a slot, first sending it these frames (a cached GOP); it starts at a keyframe."},
    {"remove", (PyCFunction)Fanout_remove, METH_O,
     "Detach a slot; once this returns, no frame is being sent to it."},
    {"wait_for_keyframe", (PyCFunction)Fanout_wait_for_keyframe, METH_NOARGS,
     "Every slot sends nothing more until a keyframe (a new upstream)."},
    {NULL},
};

static PySequenceMethods Fanout_sequence = {.sq_length = (lenfunc)Fanout_len};

static PyTypeObject FanoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Fanout",
    .tp_basicsize = sizeof(FanoutObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One track's attached slots; send(frame) sends to all of them.",
    .tp_new = Fanout_new,
    .tp_init = (initproc)Fanout_init,
    .tp_dealloc = (destructor)Fanout_dealloc,
    .tp_methods = Fanout_methods,
    .tp_as_sequence = &Fanout_sequence,
};

/* ------------------------------------------------------------------ module */

static PyObject *module_start_workers(PyObject *module, PyObject *args) {
    int threads = 0;
    if (!PyArg_ParseTuple(args, "|i", &threads)) {
        return NULL;
    }
    if (start_pool(threads) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(pool.threads);
}

static PyObject *module_workers(PyObject *module, PyObject *unused) {
    return PyLong_FromLong(atomic_load(&pool.started) ? pool.threads : 0);
}

static PyObject *module_cpu_time(PyObject *module, PyObject *unused) {
    return PyFloat_FromDouble(pool_cpu_time());
}

static PyObject *module_usable_cores(PyObject *module, PyObject *unused) {
    return PyLong_FromLong(usable_cores());
}

static PyMethodDef module_methods[] = {
    {"start_workers", module_start_workers, METH_VARARGS,
     "Start the fan-out threads once (0: one per core this process may use); their count. "
     "The first send() starts them if nothing did."},
    {"workers", module_workers, METH_NOARGS, "Fan-out threads running (0: not started)."},
    {"cpu_time", module_cpu_time, METH_NOARGS, "CPU seconds the fan-out threads have used."},
    {"usable_cores", module_usable_cores, METH_NOARGS, "Cores in this process's affinity."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "media._fanout",
    "Per-frame fan-out: RTP header rewrite, SRTP and sendmmsg for every player of a track.",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    PyTypeObject *types[] = {&FrameType, &SenderType, &SlotType, &FanoutType};
    const char *names[] = {"Frame", "Sender", "Slot", "Fanout"};
    for (int i = 0; i < 4; i++) {
        if (PyType_Ready(types[i]) < 0) {
            return NULL;
        }
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
