/*
 * beneath.c — openat2(RESOLVE_BENEATH) with a component-walk fallback
 * (the rules are in beneath.h).
 *
 * DESIGN
 * Called from every worker thread at once; the only shared state is
 * `openat2_missing`, a relaxed atomic flag set once when the kernel says
 * ENOSYS (a stale value only costs one more failed syscall).
 *
 * The fallback walk keeps a stack of O_PATH descriptors, one per folder
 * entered below dirfd: ".." pops one (and fails with -EXDEV on an empty
 * stack), a link is read with readlinkat() and its text spliced in front
 * of the rest of the path (an absolute target fails with -EXDEV), every
 * other component is opened with O_NOFOLLOW. Between the fstatat() that
 * classifies a component and the openat() that opens it, the entry may be
 * swapped for a link: O_NOFOLLOW then fails the open (ELOOP/ENOTDIR) and
 * the whole walk starts again, at most BENEATH_RETRIES times, after which
 * the caller gets -EAGAIN, as openat2 reports such races.
 */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#define BENEATH_MAX_LINKS 40   /* as the kernel's MAXSYMLINKS */
#define BENEATH_MAX_DEPTH 256  /* folders below dirfd on one path */
#define BENEATH_RETRIES   8

static atomic_bool openat2_missing;
static atomic_bool force_fallback;

bool beneath_force_fallback(bool on)
{
	return atomic_exchange(&force_fallback, on);
}

const char *beneath_strerror(int rc)
{
	switch (rc) {
	case -EXDEV:
		return "leaves the dataset root (a link out, an absolute link "
		       "or '..'; follow_symlinks = true allows links)";
	case -ELOOP:
		return "too many symbolic links, or a /proc magic link";
	default:
		return strerror(-rc);
	}
}

struct walk {
	int stack[BENEATH_MAX_DEPTH];
	int depth;
	char path[2 * PATH_MAX]; /* what is left to resolve */
};

static void walk_close(struct walk *w)
{
	while (w->depth > 0)
		close(w->stack[--w->depth]);
}

/* Replace w->path by the text of link `name` (in folder cur) followed by
 * `rest` (which points into w->path). 0 or -errno. */
static int splice_link(struct walk *w, int cur, const char *name, const char *rest)
{
	char link[PATH_MAX];
	ssize_t ln = readlinkat(cur, name, link, sizeof(link));
	size_t rl = strlen(rest);

	if (ln < 0)
		return errno == EINVAL ? -EAGAIN : -errno; /* not a link any more */
	if ((size_t)ln >= sizeof(link))
		return -ENAMETOOLONG;
	if (link[0] == '/')
		return -EXDEV;
	if ((size_t)ln + rl + 1 > sizeof(w->path))
		return -ENAMETOOLONG;
	memmove(w->path + ln, rest, rl + 1);
	memcpy(w->path, link, (size_t)ln);
	return 0;
}

/* One attempt of the walk: fd, -errno, or -EAGAIN when raced. */
static int walk_once(struct walk *w, int dirfd, const char *rel, int flags)
{
	size_t len = strlen(rel);
	int links = 0, fd;

	w->depth = 0;
	if (len >= sizeof(w->path))
		return -ENAMETOOLONG;
	memcpy(w->path, rel, len + 1);
	if (w->path[0] == '/')
		return -EXDEV;

	for (char *p = w->path;;) {
		int cur = w->depth ? w->stack[w->depth - 1] : dirfd;
		struct stat st;

		while (*p == '/')
			p++;
		if (!*p) /* the path ended on a folder ("x/", ".", "..") */
			return (fd = openat(cur, ".", flags | O_CLOEXEC)) < 0 ? -errno : fd;
		char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char *rest = p + n;
		bool last = strspn(rest, "/") == strlen(rest);
		char name[NAME_MAX + 1];

		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		memcpy(name, p, n);
		name[n] = '\0';
		p = rest;
		if (strcmp(name, ".") == 0)
			continue;
		if (strcmp(name, "..") == 0) {
			if (w->depth == 0)
				return -EXDEV;
			close(w->stack[--w->depth]);
			continue;
		}
		if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (S_ISLNK(st.st_mode)) {
			if (++links > BENEATH_MAX_LINKS)
				return -ELOOP;
			int rc = splice_link(w, cur, name, rest);
			if (rc)
				return rc;
			p = w->path;
			continue;
		}
		if (!last) {
			if (!S_ISDIR(st.st_mode))
				return -ENOTDIR;
			if (w->depth == BENEATH_MAX_DEPTH)
				return -ENAMETOOLONG;
			fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				return errno == ELOOP || errno == ENOTDIR ? -EAGAIN : -errno;
			w->stack[w->depth++] = fd;
			continue;
		}
		fd = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return errno == ELOOP ? -EAGAIN : -errno;
		if (flags & O_PATH) {
			/* O_PATH | O_NOFOLLOW opens a link itself */
			if (fstat(fd, &st) < 0 || S_ISLNK(st.st_mode)) {
				close(fd);
				return -EAGAIN;
			}
		}
		return fd;
	}
}

static int walk_open(int dirfd, const char *rel, int flags)
{
	struct walk w;
	int rc = -EAGAIN;

	for (int i = 0; i < BENEATH_RETRIES && rc == -EAGAIN; i++) {
		rc = walk_once(&w, dirfd, rel, flags);
		walk_close(&w);
	}
	return rc;
}

int beneath_open(int dirfd, const char *rel, int flags, bool follow)
{
	struct open_how how;
	int fd;

	if (follow)
		return (fd = openat(dirfd, rel, flags | O_CLOEXEC)) < 0 ? -errno : fd;
	if (atomic_load_explicit(&force_fallback, memory_order_relaxed) ||
	    atomic_load_explicit(&openat2_missing, memory_order_relaxed))
		return walk_open(dirfd, rel, flags);

	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)(flags | O_CLOEXEC);
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	for (int i = 0; i < BENEATH_RETRIES; i++) {
		fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return fd;
		if (errno == EAGAIN || errno == EINTR)
			continue;
		if (errno == ENOSYS) {
			atomic_store_explicit(&openat2_missing, true,
					      memory_order_relaxed);
			return walk_open(dirfd, rel, flags);
		}
		/* a seccomp filter refusing openat2 says EPERM: let the walk
		 * give the real answer */
		if (errno == EPERM)
			return walk_open(dirfd, rel, flags);
		return -errno;
	}
	return -EAGAIN;
}
