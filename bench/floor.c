/* floor.c: the kernel's cost per SSE delivery on this machine (target "floor").
 *
 * A server that does nothing but the part every SSE server must: take a publish,
 * build the frame once, and hand it to each subscriber's socket. One epoll loop,
 * one thread, no history, no ids to resume from, no heartbeats. Its CPU per
 * delivery is what the kernel charges for send() on loopback plus a few loads
 * and stores; what a real server spends above it is its own.
 *
 * It speaks the subset of the hub's API the bench uses:
 *   GET  /healthz                      200 {"status":"ok"}
 *   GET  /channels/<name>/events       200 text/event-stream, then frames until close
 *   POST /channels/<name>/events       {"event":..., "data":...}
 *   POST /publish                      [{"channel":..., "event":..., "data":...}, ...]
 * and 404 (then close) to anything else, e.g. POST /publish/stream.
 *
 * Writes: the frames of every request found in one read of a publisher's socket
 * are gathered per channel; each subscriber of that channel gets them in one
 * send() (one frame) or one writev() (several, e.g. a /publish batch).
 * A subscriber whose socket does not take a whole write is disconnected (the
 * bench counts what it missed): nothing is buffered per subscriber, so memory is
 * bounded by the connections and one request (MAX_REQUEST).
 *
 *   gcc -O2 -o floor floor.c && ./floor <port>      (listens on 127.0.0.1 only)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_REQUEST (1 << 22) /* bytes buffered per publisher connection */
#define MAX_CHANNELS (1 << 15)
#define TABLE (MAX_CHANNELS * 2) /* open addressing, power of two */
#define IOV_BATCH 64

typedef struct { char *p; size_t len, cap; } buf_t;
typedef struct { char *name; size_t len; int *subs, n, cap; } channel_t;
typedef struct { char sub; int slot; channel_t *ch; buf_t in; } conn_t;
typedef struct { channel_t *ch; size_t off, len; } frame_t;

static conn_t *conns;
static int max_fds, ep;
static channel_t *table[TABLE];
static int n_channels;
static unsigned long position;
static buf_t arena, out; /* one read pass: its frames' bytes, its answers */
static frame_t *frames;
static size_t n_frames, cap_frames;

static void put(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        if (!(b->p = realloc(b->p, b->cap))) { perror("realloc"); exit(1); }
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void drop(int fd) {
    conn_t *c = &conns[fd];
    if (c->sub) { /* swap-remove from its channel */
        channel_t *ch = c->ch;
        int last = ch->subs[--ch->n];
        ch->subs[c->slot] = last;
        conns[last].slot = c->slot;
    }
    free(c->in.p);
    memset(c, 0, sizeof *c);
    close(fd);
}

static channel_t *channel(const char *name, size_t len, int create) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
    for (unsigned i = h & (TABLE - 1);; i = (i + 1) & (TABLE - 1)) {
        channel_t *ch = table[i];
        if (ch && ch->len == len && !memcmp(ch->name, name, len)) return ch;
        if (ch) continue;
        if (!create || n_channels >= MAX_CHANNELS) return NULL;
        if (!(ch = table[i] = calloc(1, sizeof *ch)) || !(ch->name = malloc(len))) exit(1);
        memcpy(ch->name, name, len);
        ch->len = len;
        n_channels++;
        return ch;
    }
}

/* ---- just enough JSON to find an item's "channel", "event" and "data" ---- */
static const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}
static const char *string_end(const char *p, const char *e) { /* p at the quote */
    for (p++; p < e; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}
static const char *value_end(const char *p, const char *e) {
    if (p < e && *p == '"') return string_end(p, e);
    if (p < e && (*p == '{' || *p == '[')) {
        for (int depth = 0; p < e;) {
            if (*p == '"') { if (!(p = string_end(p, e))) return NULL; continue; }
            if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return NULL;
    }
    const char *v = p;
    while (p < e && !strchr(",}] \t\r\n", *p)) p++;
    return p > v ? p : NULL;
}

typedef struct { const char *key[3], *val[3]; size_t vlen[3]; } item_t; /* channel, event, data */

/* One object at p: its channel, event and data (strings without their quotes). */
static const char *object(const char *p, const char *e, item_t *it) {
    static const char *keys[3] = {"channel", "event", "data"};
    memset(it, 0, sizeof *it);
    if ((p = ws(p, e)) >= e || *p++ != '{') return NULL;
    if ((p = ws(p, e)) < e && *p == '}') return p + 1;
    for (;;) {
        if (p >= e || *p != '"') return NULL;
        const char *k = p + 1, *ke = string_end(p, e);
        if (!ke || (p = ws(ke, e)) >= e || *p != ':') return NULL;
        const char *v = ws(p + 1, e), *ve = value_end(v, e);
        if (!ve) return NULL;
        for (int i = 0; i < 3; i++)
            if ((size_t)(ke - 1 - k) == strlen(keys[i]) && !memcmp(k, keys[i], ke - 1 - k)) {
                int quoted = i < 2 && *v == '"';
                if (i < 2 && (!quoted || memchr(v, '\\', ve - v))) return NULL;
                it->val[i] = v + quoted;
                it->vlen[i] = (ve - v) - 2 * quoted;
            }
        if ((p = ws(ve, e)) < e && *p == ',') { p = ws(p + 1, e); continue; }
        return p < e && *p == '}' ? p + 1 : NULL;
    }
}

/* The frame for one item, kept for the flush; 0 if it cannot be one. */
static int add_frame(const char *ch, size_t chlen, const item_t *it) {
    const char *ev = it->val[1] ? it->val[1] : "message";
    size_t evlen = it->val[1] ? it->vlen[1] : 7;
    if (!it->val[2] || !chlen || memchr(it->val[2], '\n', it->vlen[2]) || memchr(it->val[2], '\r', it->vlen[2]))
        return 0;
    char head[64];
    int n = snprintf(head, sizeof head, "id: %lu:", ++position);
    if (n_frames == cap_frames) {
        cap_frames = cap_frames ? 2 * cap_frames : 256;
        if (!(frames = realloc(frames, cap_frames * sizeof *frames))) exit(1);
    }
    frame_t *f = &frames[n_frames++];
    f->ch = channel(ch, chlen, 0);
    f->off = arena.len;
    put(&arena, head, n), put(&arena, ch, chlen), put(&arena, "\nevent: ", 8);
    put(&arena, ev, evlen), put(&arena, "\ndata: ", 7);
    put(&arena, it->val[2], it->vlen[2]), put(&arena, "\n\n", 2);
    f->len = arena.len - f->off;
    return 1;
}

/* Send the pass's frames: per channel, all of them in one write per subscriber. */
static void flush_frames(void) {
    struct iovec iov[IOV_BATCH];
    for (size_t i = 0; i < n_frames; i++) {
        channel_t *ch = frames[i].ch;
        if (!ch) continue;
        size_t total = 0;
        int n = 0;
        for (size_t j = i; j < n_frames && n < IOV_BATCH; j++)
            if (frames[j].ch == ch) {
                iov[n].iov_base = arena.p + frames[j].off;
                total += iov[n++].iov_len = frames[j].len;
                frames[j].ch = NULL;
            }
        for (int s = 0; s < ch->n; s++) {
            int fd = ch->subs[s];
            ssize_t sent = n == 1 ? send(fd, iov[0].iov_base, total, MSG_NOSIGNAL | MSG_DONTWAIT)
                                  : writev(fd, iov, n);
            if (sent != (ssize_t)total) drop(fd), s--; /* the last one took its slot */
        }
    }
    n_frames = arena.len = 0;
}

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
static const char HEALTHY[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
static const char NOT_FOUND[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char FULL[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char STREAM[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\n\r\nretry: 2000\n\n";

/* One request: 1 to go on, 0 to close after the answers (or, for a subscriber, keep it). */
static int request(int fd, const char *head, size_t hlen, const char *body, size_t blen) {
    const char *sp = memchr(head, ' ', hlen), *path, *pe;
    if (!sp || !(pe = memchr(path = sp + 1, ' ', hlen - (sp + 1 - head)))) return put(&out, BAD, sizeof BAD - 1), 0;
    size_t plen = pe - path;
    int get = sp - head == 3 && !memcmp(head, "GET", 3), post = sp - head == 4 && !memcmp(head, "POST", 4);
    const char *name = path + 10;
    ssize_t nlen = (ssize_t)plen - 17; /* "/channels/" + name + "/events" */
    int is_channel = nlen > 0 && !memcmp(path, "/channels/", 10) && !memcmp(pe - 7, "/events", 7);
    if (get && plen == 8 && !memcmp(path, "/healthz", 8)) return put(&out, HEALTHY, sizeof HEALTHY - 1), 1;
    if (get && is_channel) {
        channel_t *ch = channel(name, nlen, 1);
        if (!ch) return put(&out, FULL, sizeof FULL - 1), 0;
        if (ch->n == ch->cap) {
            ch->cap = ch->cap ? 2 * ch->cap : 8;
            if (!(ch->subs = realloc(ch->subs, ch->cap * sizeof *ch->subs))) exit(1);
        }
        put(&out, STREAM, sizeof STREAM - 1);
        conns[fd].sub = 1, conns[fd].ch = ch, conns[fd].slot = ch->n;
        ch->subs[ch->n++] = fd;
        return 0;
    }
    item_t it;
    const char *p, *e = body + blen;
    if (post && is_channel) {
        if (!(p = object(body, e, &it)) || ws(p, e) != e || !add_frame(name, nlen, &it))
            return put(&out, BAD, sizeof BAD - 1), 1;
        return put(&out, OK, sizeof OK - 1), 1;
    }
    if (post && plen == 8 && !memcmp(path, "/publish", 8)) {
        size_t before = n_frames, arena_before = arena.len;
        int ok = (p = ws(body, e)) < e && *p == '[';
        if (ok && (p = ws(p + 1, e)) < e && *p == ']') p++; /* an empty batch */
        else while (ok) {
            if (!(p = object(p, e, &it)) || !add_frame(it.val[0], it.vlen[0], &it)) { ok = 0; break; }
            if ((p = ws(p, e)) < e && *p == ',') { p = ws(p + 1, e); continue; }
            ok = p < e && *p++ == ']';
            break;
        }
        if (ok && ws(p, e) == e) return put(&out, OK, sizeof OK - 1), 1;
        n_frames = before, arena.len = arena_before; /* nothing of a bad batch goes out */
        return put(&out, BAD, sizeof BAD - 1), 1;
    }
    return put(&out, NOT_FOUND, sizeof NOT_FOUND - 1), 0;
}

/* Every complete request in the connection's buffer, then their frames and answers. */
static void readable(int fd) {
    conn_t *c = &conns[fd];
    char tmp[65536];
    ssize_t got;
    int more = 1;
    while ((got = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT)) > 0) {
        if (c->sub) continue; /* a subscriber has nothing to say */
        if (c->in.len + got > MAX_REQUEST) { drop(fd); return; }
        put(&c->in, tmp, got);
    }
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) { drop(fd); return; }
    size_t off = 0;
    while (more && !c->sub) {
        char *start = c->in.p + off, *end = c->in.len - off >= 4 ? memmem(start, c->in.len - off, "\r\n\r\n", 4) : NULL;
        if (!end) break;
        size_t hlen = end - start, blen = 0;
        for (char *h = memchr(start, '\n', hlen); h && h < end; h = memchr(h + 1, '\n', end - h))
            if (!strncasecmp(h + 1, "content-length:", 15)) blen = strtoul(h + 16, NULL, 10);
            else if (!strncasecmp(h + 1, "transfer-encoding:", 18)) blen = MAX_REQUEST; /* not spoken */
        if (blen >= MAX_REQUEST) { put(&out, NOT_FOUND, sizeof NOT_FOUND - 1); more = 0; break; }
        if (c->in.len - off < hlen + 4 + blen) break;
        more = request(fd, start, hlen, end + 4, blen);
        off += hlen + 4 + blen;
    }
    flush_frames();
    if (off) memmove(c->in.p, c->in.p + off, c->in.len -= off);
    int failed = out.len && send(fd, out.p, out.len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)out.len;
    out.len = 0;
    if (failed || (!more && !c->sub)) drop(fd); /* a short answer: no state kept to finish it */
    else if (c->sub) free(c->in.p), c->in = (buf_t){0};
}

int main(int argc, char **argv) {
    if (argc != 2 || atoi(argv[1]) <= 0) { fprintf(stderr, "usage: %s <port>\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max > (1 << 20) ? (1 << 20) : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    max_fds = (int)rl.rlim_cur;
    if (!(conns = calloc(max_fds, sizeof *conns))) return 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) { perror("listen"); return 1; }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "floor listening on 127.0.0.1:%s\n", argv[1]);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != lfd) { readable(fd); continue; }
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ev = (struct epoll_event){.events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd};
                if (cfd >= max_fds || epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev)) close(cfd);
            }
        }
    }
}
