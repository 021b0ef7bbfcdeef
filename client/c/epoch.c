/*
 * epoch.c — batches of an epoch: one on demand (get_batch) and in-order
 * iteration over a window of requests (epoch_begin/next).
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

int cutmixd_client_get_batch(cutmixd_client_t *c, uint32_t epoch, uint32_t k,
			     cutmixd_batch_t **out)
{
	struct wire_request rq;
	struct reply *r = NULL;
	struct failure f;
	int from = -1;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return -EINVAL;
	if (!out)
		return cmx_set_error(c, -EINVAL, 0, "get_batch: out is NULL");
	if (!c->pipeline[0])
		return cmx_set_error(c, -EINVAL, 0, "get_batch: client has no pipeline");
	rq = cmx_make_request(c, WIRE_BATCH, epoch, k);
	rc = cmx_transact(c, WIRE_BATCH, epoch, k, &r, &from);
	if (rc < 0)
		return rc;
	rq.request_id = r->h.request_id;
	if (cmx_make_batch(c, r, &rq, out, &f) < 0) {
		rc = cmx_set_failure(c, &f);
	} else {
		(*out)->peer = from;
		c->peers[from].batches++;
	}
	cmx_reply_free(&r);
	return rc;
}

static void epoch_clear_slots(struct epoch_iter *ep)
{
	for (uint32_t i = 0; ep->slots && i < ep->window; i++)
		cmx_job_release(&ep->slots[i]);
}

/* End the iteration with an error that later calls repeat. */
static int epoch_fail(cutmixd_client_t *c, int err)
{
	struct epoch_iter *ep = &c->ep;

	ep->failed = err;
	cmx_fail_set(&ep->fail, err, c->err_status, "%s", c->err);
	epoch_clear_slots(ep);
	return err;
}

/* Ask for batches up to the window's edge (sent when there is room). */
static int fill_window(cutmixd_client_t *c)
{
	struct epoch_iter *ep = &c->ep;

	while (ep->sent < ep->end && ep->sent - ep->next < ep->window) {
		struct job *s = cmx_ep_slot(ep, ep->sent);
		int rc;

		cmx_job_start(s, WIRE_BATCH, ep->epoch, ep->sent);
		ep->sent++;
		rc = cmx_dispatch(c, s, cmx_now_ms());
		if (rc < 0)
			return rc;
	}
	return 0;
}

int cutmixd_client_epoch_begin(cutmixd_client_t *c, uint32_t epoch, uint32_t start)
{
	struct epoch_iter *ep;
	uint64_t window;
	int64_t bpe;
	int npeers;
	int rc;

	if (!c)
		return -EINVAL;
	ep = &c->ep;
	/* Abandon the previous iteration: its late replies become stale. */
	epoch_clear_slots(ep);
	ep->active = false;
	ep->failed = 0;
	bpe = cutmixd_client_batches_per_epoch(c);
	if (bpe < 0)
		return (int)bpe;
	if (start > bpe)
		return cmx_set_error(c, -ERANGE, 0,
				 "epoch_begin: start %u beyond the %" PRId64 " batches per epoch",
				 start, bpe);
	/* With dns+tcp:// groups the daemons are those discovered so far:
	 * a default window follows their number at each begin. */
	npeers = c->ngroups ? cmx_usable_peers(c) : c->npeers;
	if (c->ngroups && c->window_auto)
		c->window = CUTMIXD_DEFAULT_WINDOW * (uint32_t)npeers;
	window = c->window;
	if (c->max_window > 0 && window > (uint64_t)c->max_window * (uint64_t)npeers)
		window = (uint64_t)c->max_window * (uint64_t)npeers;
	if (window != ep->window || !ep->slots) {
		struct job *s = calloc(window, sizeof(*s));

		if (!s)
			return cmx_set_error(c, -ENOMEM, 0, "epoch_begin: out of memory");
		for (uint64_t i = 0; i < window; i++)
			s[i].only = -1;
		if (ep->slots)
			cmx_reqs_detach(c, ep->slots, ep->window);
		free(ep->slots);
		ep->slots = s;
		ep->window = (uint32_t)window;
	}
	ep->epoch = epoch;
	ep->next = ep->sent = start;
	ep->end = (uint32_t)bpe;
	ep->active = true;
	rc = cmx_ensure_connected(c);
	if (rc == 0)
		rc = fill_window(c);
	if (rc < 0)
		return epoch_fail(c, rc);
	return 0;
}

int cutmixd_client_epoch_next(cutmixd_client_t *c, cutmixd_batch_t **out)
{
	struct epoch_iter *ep;
	int64_t deadline;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return -EINVAL;
	ep = &c->ep;
	if (!out)
		return cmx_set_error(c, -EINVAL, 0, "epoch_next: out is NULL");
	if (!ep->active)
		return cmx_set_error(c, -EINVAL, 0, "epoch_next: no epoch begun");
	if (ep->failed)
		return cmx_set_failure(c, &ep->fail);
	if (ep->next >= ep->end)
		return 0;
	deadline = cmx_now_ms() + c->timeout_ms;
	/* A consumer slower than the daemons finds its batches ready and
	 * never waits in service(): look at the DNS names here too. */
	rc = cmx_discover(c, cmx_now_ms(), false);
	if (rc == 0)
		rc = fill_window(c);
	if (rc < 0)
		return epoch_fail(c, rc);
	for (;;) {
		struct job *s = cmx_ep_slot(ep, ep->next);

		if (s->state == JOB_DONE) {
			*out = s->b;
			s->b = NULL;
			cmx_job_release(s);
			ep->next++;
			/* Keep the window full; a failure to send shows at the
			 * next call, this batch is good. */
			rc = fill_window(c);
			if (rc < 0)
				epoch_fail(c, rc);
			return 1;
		}
		if (s->state == JOB_FAILED) {
			if (s->fail)
				cmx_set_failure(c, s->fail);
			else
				cmx_set_error(c, -ENOMEM, 0, "epoch_next: out of memory");
			return epoch_fail(c, s->fail ? s->fail->err : -ENOMEM);
		}
		if (cmx_all_refused(c))
			return epoch_fail(c, cmx_refused_error(c));
		if (cmx_now_ms() >= deadline) {
			char peers[ERR_MAX];

			cmx_describe_peers(c, peers, sizeof(peers));
			cmx_set_error(c, -ETIMEDOUT, 0,
				  "timeout: no reply for batch %u of epoch %u from '%s' within %d ms [%s]",
				  s->batch, ep->epoch, c->endpoints, c->timeout_ms, peers);
			return epoch_fail(c, -ETIMEDOUT);
		}
		rc = cmx_service(c, deadline);
		if (rc < 0)
			return epoch_fail(c, rc);
	}
}

int64_t cutmixd_client_epoch_position(const cutmixd_client_t *c)
{
	if (!c || !c->ep.active)
		return -EINVAL;
	return c->ep.next;
}
