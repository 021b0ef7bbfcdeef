/*
 * beneath.h — open a path relative to a folder without ever leaving it:
 * the containment check of every dataset file, done at the open itself so
 * that a link swapped in after the index was built cannot escape.
 *
 * Without `follow`, resolution may not leave `dirfd` by any route: ".."
 * above it, an absolute path, an absolute symbolic link (even one pointing
 * back inside), a relative link climbing out, or a "magic" /proc link all
 * fail with -EXDEV (or -ELOOP for magic links and more than 40 links).
 * Links that stay inside are followed. Dangling links are links: a link
 * whose target does not exist yet is still checked component by component,
 * so it cannot become an escape when its target appears later.
 *
 * The kernel does the work when it can: openat2(2) with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS (Linux >= 5.6). Where openat2 is missing (ENOSYS,
 * or refused by a seccomp filter with EPERM) the same rules are applied by
 * walking the path one component at a time with O_NOFOLLOW, expanding each
 * link by hand (beneath_force_fallback() selects that walk, for tests).
 *
 * With `follow` the path is opened with plain openat(2): links go anywhere
 * ([dataset] follow_symlinks = true); ".." and absolute paths are still the
 * caller's business (the manifest loader refuses them).
 */
#ifndef CUTMIXD_BENEATH_H
#define CUTMIXD_BENEATH_H

#include <stdbool.h>

/*
 * openat(dirfd, rel, flags | O_CLOEXEC) under the rules above. Returns a
 * file descriptor, or -errno: -EXDEV (leaves the folder), -ELOOP, -ENOENT,
 * -EAGAIN (a concurrent rename kept interfering; retry later), or what
 * open(2) says.
 */
int beneath_open(int dirfd, const char *rel, int flags, bool follow);

/* Use the component walk even where openat2 exists (tests); returns the
 * previous setting. Not thread safe against concurrent beneath_open(). */
bool beneath_force_fallback(bool on);

/* Human text for a beneath_open() error: EXDEV and ELOOP get a sentence
 * about links, the rest strerror(). */
const char *beneath_strerror(int rc);

#endif
