/*
 * discovery.c — the client's peers and replica discovery by DNS.
 *
 * An endpoint of the list is a ZeroMQ endpoint (one daemon, one peer) or
 * dns+tcp://NAME:PORT (a group): every A/AAAA record of NAME is a daemon
 * on PORT, what a Kubernetes headless Service or a Slurm host list gives.
 * A group is resolved (getaddrinfo, in the calling thread, bounded by the
 * resolver's own timeout and attempts of resolv.conf) when the client
 * first connects and again every discovery interval (default 10 s), from
 * service(). Each address becomes a peer "tcp://ADDR:PORT" of its own,
 * appended to c->peers (peers are never removed, so request and batch peer
 * indexes stay valid): new addresses are connected and used at once; an
 * address missing from the answer makes its peer "gone": disconnected, no
 * new requests, and its outstanding ones expired, so the existing failover
 * re-sends them to the others (a late reply is still taken: the first
 * reply wins). An address that comes back is connected and used again. A
 * failed resolution (no server, SERVFAIL, NXDOMAIN, no address) keeps the
 * last set and its message appears in timeout errors.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <zmq.h>

static int set_int(void *sock, int opt, int v)
{
	return zmq_setsockopt(sock, opt, &v, sizeof(v));
}

/* A new peer for `endpoint` with its own DEALER (not connected yet): its
 * index, or -errno. */
int cmx_peer_add(cutmixd_client_t *c, const char *endpoint, int group)
{
	struct peer *p;

	if (c->npeers == c->cappeers) {
		int cap = c->cappeers ? 2 * c->cappeers : 4;
		struct peer *np = realloc(c->peers, (size_t)cap * sizeof(*np));
		zmq_pollitem_t *ni;

		if (!np)
			return -ENOMEM;
		c->peers = np;
		ni = realloc(c->items, (size_t)cap * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		c->items = ni;
		c->cappeers = cap;
	}
	p = &c->peers[c->npeers];
	memset(p, 0, sizeof(*p));
	memset(&c->items[c->npeers], 0, sizeof(c->items[0]));
	p->endpoint = strdup(endpoint);
	if (!p->endpoint)
		return -ENOMEM;
	p->last_rx = -1;
	p->latency = -1;
	p->backoff = PROBE_MIN_MS;
	p->group = group;
	p->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	if (!p->sock) {
		int e = zmq_errno();

		free(p->endpoint);
		return -e;
	}
	c->items[c->npeers].socket = p->sock;
	c->items[c->npeers].events = ZMQ_POLLIN;
	return c->npeers++;
}

/* Options, then connect peer i. 0 or -errno (message set). */
int cmx_peer_connect(cutmixd_client_t *c, int i)
{
	struct peer *p = &c->peers[i];
	int hb_timeout = c->resend_ms > 3000 ? c->resend_ms : 3000;

	/* Closing never waits; requests go only to a live connection, and a
	 * dropped one takes its requests with it (they are re-sent) instead
	 * of delivering them late after a restart. */
	if (set_int(p->sock, ZMQ_LINGER, 0) != 0 || set_int(p->sock, ZMQ_IMMEDIATE, 1) != 0 ||
	    set_int(p->sock, ZMQ_RECONNECT_IVL, RECONNECT_IVL_MS) != 0)
		return cmx_zmq_fail(c, "socket options");
#ifdef ZMQ_CONNECT_TIMEOUT
	set_int(p->sock, ZMQ_CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS);
#endif
#ifdef ZMQ_HEARTBEAT_IVL
	/* A connection that carries nothing for this long is dropped (dead
	 * link) and made again. */
	set_int(p->sock, ZMQ_HEARTBEAT_IVL, HEARTBEAT_IVL_MS);
	set_int(p->sock, ZMQ_HEARTBEAT_TIMEOUT, hb_timeout);
#endif
	/* A discovered IPv6 address (AAAA): ZeroMQ connects to one only with
	 * ZMQ_IPV6 (listed endpoints keep ZeroMQ's default). */
	if (p->group >= 0 && strchr(p->endpoint, '[') && set_int(p->sock, ZMQ_IPV6, 1) != 0)
		return cmx_zmq_fail(c, "socket option ZMQ_IPV6");
	if (c->curve &&
	    (zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) != 0 ||
	     zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) != 0 ||
	     zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40) != 0))
		return cmx_zmq_fail(c, "CURVE socket options");
	if (zmq_connect(p->sock, p->endpoint) != 0) {
		int e = zmq_errno();

		return cmx_set_error(c, -e, 0, "connect '%s': %s", p->endpoint, zmq_strerror(e));
	}
	p->connected = true;
	return 0;
}

/* Parse dns+tcp://NAME:PORT into a new group. 0 or -EINVAL / -ENOMEM. */
int cmx_group_add(cutmixd_client_t *c, const char *spec)
{
	const char *hp = spec + strlen(DNS_SCHEME), *colon = strrchr(hp, ':');
	struct dns_group *g, *ng;
	char *end;
	long port;

	if (!colon || colon == hp || memchr(hp, '[', (size_t)(colon - hp)) ||
	    memchr(hp, '/', (size_t)(colon - hp)))
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
		return -EINVAL;
	ng = realloc(c->groups, (size_t)(c->ngroups + 1) * sizeof(*ng));
	if (!ng)
		return -ENOMEM;
	c->groups = ng;
	g = &c->groups[c->ngroups];
	memset(g, 0, sizeof(*g));
	g->spec = strdup(spec);
	g->host = strndup(hp, (size_t)(colon - hp));
	g->port = strdup(colon + 1);
	c->ngroups++;
	if (!g->spec || !g->host || !g->port)
		return -ENOMEM;
	return 0;
}

static int find_peer(const cutmixd_client_t *c, const char *endpoint)
{
	for (int i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].endpoint, endpoint) == 0)
			return i;
	return -1;
}

/* "tcp://ADDR:PORT" of one getaddrinfo result; false if not IPv4/IPv6. */
static bool endpoint_of(const struct addrinfo *ai, const char *port, char *out, size_t n)
{
	char a[INET6_ADDRSTRLEN];

	if (ai->ai_family == AF_INET &&
	    inet_ntop(AF_INET, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, a, sizeof(a)))
		snprintf(out, n, "tcp://%s:%s", a, port);
	else if (ai->ai_family == AF_INET6 &&
		 inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, a,
			   sizeof(a)))
		snprintf(out, n, "tcp://[%s]:%s", a, port);
	else
		return false;
	return true;
}

static void peer_gone(cutmixd_client_t *c, int i)
{
	struct peer *p = &c->peers[i];

	p->gone = true;
	cmx_peer_expire_all(c, i);
	if (p->connected && zmq_disconnect(p->sock, p->endpoint) == 0)
		p->connected = false;
}

/* Peer for one address of group gi: added, or back from gone. Marks it
 * in `seen`. 0 or -errno. */
static int address_seen(cutmixd_client_t *c, int gi, const char *ep, bool *seen, int nseen)
{
	int i = find_peer(c, ep), rc;

	if (i < 0) {
		i = cmx_peer_add(c, ep, gi);
		if (i < 0)
			return cmx_set_error(c, i, 0, "discovery: %s: out of memory",
					     c->groups[gi].spec);
		rc = cmx_peer_connect(c, i);
		if (rc < 0)
			return rc;
	} else if (c->peers[i].group == gi && c->peers[i].gone) {
		struct peer *p = &c->peers[i];

		p->gone = false;
		p->down = false;
		p->probe_id = 0;
		p->backoff = PROBE_MIN_MS;
		if (!p->connected) {
			rc = cmx_peer_connect(c, i);
			if (rc < 0)
				return rc;
		}
	}
	if (i < nseen)
		seen[i] = true;
	return 0;
}

/* Resolve group gi once and apply the answer. 0, or -errno of a failed
 * local step (a resolution failure is not an error: the set stays). */
static int resolve_group(cutmixd_client_t *c, int gi)
{
	struct dns_group *g = &c->groups[gi];
	struct addrinfo hints, *res = NULL;
	int nseen = c->npeers, n = 0, rc = 0, e;
	bool *seen;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	e = getaddrinfo(g->host, g->port, &hints, &res);
	if (e != 0) {
		snprintf(g->err, sizeof(g->err), "cannot resolve '%s': %s", g->host,
			 e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
		return 0;
	}
	seen = calloc((size_t)nseen + 1, sizeof(*seen));
	if (!seen) {
		freeaddrinfo(res);
		return cmx_set_error(c, -ENOMEM, 0, "discovery: out of memory");
	}
	for (const struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next) {
		char ep[INET6_ADDRSTRLEN + 32];

		if (endpoint_of(ai, g->port, ep, sizeof(ep))) {
			rc = address_seen(c, gi, ep, seen, nseen);
			n++;
		}
	}
	freeaddrinfo(res);
	if (rc == 0 && n == 0) {
		snprintf(g->err, sizeof(g->err), "cannot resolve '%s': no IPv4/IPv6 address",
			 g->host);
	} else if (rc == 0) {
		g->err[0] = 0;
		g->naddrs = n;
		for (int i = 0; i < nseen; i++)
			if (c->peers[i].group == gi && !seen[i] && !c->peers[i].gone)
				peer_gone(c, i);
	}
	free(seen);
	return rc;
}

/* Resolve the groups that are due (all of them if `force`). 0 or -errno. */
int cmx_discover(cutmixd_client_t *c, int64_t now, bool force)
{
	if (!c->connected)
		return 0;
	for (int gi = 0; gi < c->ngroups; gi++) {
		struct dns_group *g = &c->groups[gi];
		int rc;

		if (!force && now < g->next_at)
			continue;
		rc = resolve_group(c, gi);
		g->next_at = cmx_now_ms() + c->discovery_ms;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* When the next group is due, INT64_MAX if there is none. */
int64_t cmx_discovery_due(const cutmixd_client_t *c)
{
	int64_t t = INT64_MAX;

	for (int gi = 0; c->connected && gi < c->ngroups; gi++)
		if (c->groups[gi].next_at < t)
			t = c->groups[gi].next_at;
	return t;
}

/* Peers that can be given work (neither refused nor gone), at least 1. */
int cmx_usable_peers(const cutmixd_client_t *c)
{
	int n = 0;

	for (int i = 0; i < c->npeers; i++)
		n += !c->peers[i].refused && !c->peers[i].gone;
	return n ? n : 1;
}

/* "; dns+tcp://x:1: 2 addresses" or "...: cannot resolve 'x': ..." */
void cmx_describe_groups(const cutmixd_client_t *c, char *out, size_t n)
{
	size_t len = strlen(out);

	for (int gi = 0; gi < c->ngroups && len + 1 < n; gi++) {
		const struct dns_group *g = &c->groups[gi];
		int w;

		if (g->err[0])
			w = snprintf(out + len, n - len, "%s%s: %s%s", len ? "; " : "", g->spec,
				     g->err, g->naddrs ? " (last answer kept)" : "");
		else
			w = snprintf(out + len, n - len, "%s%s: %d address%s", len ? "; " : "",
				     g->spec, g->naddrs, g->naddrs == 1 ? "" : "es");
		if (w < 0)
			break;
		len += (size_t)w;
	}
}
