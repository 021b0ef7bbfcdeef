# cutmixd — plain Makefile. `make` builds, `make test` runs every test,
# `make demo` runs the built-in sample end to end. V=1 shows commands.

PREFIX  ?= /usr/local
DESTDIR ?=
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
# Binaries and libraries land in $(OUT)/bin and $(OUT)/lib; sanitizer
# builds use their own OUT and BUILD folders.
OUT     ?= .
B       := $(OUT)/bin
L       := $(OUT)/lib

CC      ?= cc
PKGS    := libzmq inih libjpeg libsystemd libsodium libmicrohttpd spng libwebp
# A missing -dev package is named here, not as a wall of missing headers.
# (Skipped for the goals that run scripts/deps.sh first and build in a sub-make.)
ifeq ($(filter deps clean test demo bench asan tsan,$(MAKECMDGOALS)),)
PKG_MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
ifneq ($(PKG_MISSING),)
$(error pkg-config cannot find: $(PKG_MISSING); run scripts/deps.sh (or make deps) first)
endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# What the build needs lives in FINAL_*; a user's CFLAGS=, LDFLAGS= and
# LDLIBS= on the command line are added to it and cannot remove it
# (redis's pattern).
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
# One version for the daemon, the C client, the pkg-config file and the
# Python package: the file VERSION.
VERSION_STR   := $(shell cat VERSION)
FINAL_CFLAGS  = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -pthread -fPIC \
                -Iproto -Idaemon -Iclient/c $(PKG_CFLAGS) -MMD -MP \
                -DCUTMIXD_VERSION=\"$(VERSION_STR)\" $(CFLAGS)
FINAL_LDFLAGS = -pthread $(LDFLAGS)
FINAL_LIBS    = $(PKG_LIBS) -lm $(LDLIBS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

PROTO_SRC  := $(wildcard proto/*.c)
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
CLIENT_SRC := $(wildcard client/c/*.c)
TOOL_SRC   := $(wildcard scripts/*.c)
UNIT_SRC   := $(filter-out tests/unit/test_util.c,$(wildcard tests/unit/test_*.c))
UNIT_HELP  := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

PROTO_OBJ  := $(call obj,$(PROTO_SRC))
DAEMON_OBJ := $(call obj,$(DAEMON_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
TOOLS      := $(patsubst scripts/%.c,$(B)/%,$(TOOL_SRC))

# Keep every object file, also those make would see as intermediate.
.SECONDARY:

.PHONY: all test unit integration demo bench soak deps clean install asan tsan
all: $(B)/cutmixd $(L)/libcutmixd.a $(L)/libcutmixd.so $(B)/cutmixd-count $(TOOLS)

# What prints or reports the version is rebuilt when VERSION changes.
$(call obj,daemon/main.c daemon/info.c daemon/metrics.c client/c/client.c client/c/examples/count_epoch.c): VERSION


$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(FINAL_CFLAGS) -c -o $@ $<

# The per-sample image ops are written as plain loops for the vectoriser
# (-O2 alone only vectorises trivially countable loops; no-trapping-math
# lets selects between float results vectorise, the values are unchanged).
$(BUILD)/daemon/imgops.o $(BUILD)/daemon/imgops_geom.o: FINAL_CFLAGS += -ftree-vectorize -fno-trapping-math

$(B)/cutmixd: $(BUILD)/daemon/main.o $(DAEMON_OBJ) $(PROTO_OBJ)
	@mkdir -p $(B)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(L)/libcutmixd.a: $(CLIENT_OBJ) $(PROTO_OBJ)
	@mkdir -p $(L)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(L)/libcutmixd.so: $(CLIENT_OBJ) $(PROTO_OBJ)
	@mkdir -p $(L)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -shared -Wl,-soname,libcutmixd.so.0 -o $@ $^ -lzmq

$(B)/cutmixd-count: $(BUILD)/client/c/examples/count_epoch.o $(L)/libcutmixd.a
	@mkdir -p $(B)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ -lzmq

$(B)/%: $(BUILD)/scripts/%.o $(DAEMON_OBJ) $(PROTO_OBJ)
	@mkdir -p $(B)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# Each tests/unit/test_X.c is one cmocka program linked with the shared
# test helpers and only the modules it tests (TEST_DEPS_X, object stems).
TEST_DEPS_test_config  := daemon/config daemon/config_options daemon/config_values daemon/config_check daemon/log daemon/policy daemon/rng
TEST_DEPS_test_policy  := daemon/policy daemon/rng
TEST_DEPS_test_rng     := daemon/rng
TEST_DEPS_test_digest  := daemon/digest
TEST_DEPS_test_dataset := daemon/dataset daemon/dataset_scan daemon/dataset_manifest daemon/beneath daemon/shards daemon/tarindex daemon/pack daemon/source daemon/decode daemon/decode_io daemon/imgfmt daemon/splice daemon/digest daemon/log daemon/config daemon/config_options daemon/config_values daemon/config_check daemon/policy daemon/rng
TEST_DEPS_test_sampler := daemon/sampler daemon/rng
TEST_DEPS_test_decode  := daemon/decode daemon/decode_io daemon/beneath daemon/imgfmt daemon/splice daemon/log
TEST_DEPS_test_resize  := daemon/resize daemon/resize_simd
TEST_DEPS_test_stream  := daemon/decode daemon/decode_io daemon/beneath daemon/imgfmt daemon/splice daemon/log daemon/resize daemon/resize_simd
TEST_DEPS_test_augment := daemon/augment daemon/rng
TEST_DEPS_test_wire    := proto/wire
TEST_DEPS_test_client  := proto/wire proto/keyfile client/c/client client/c/dispatch client/c/batch client/c/epoch client/c/json client/c/discovery
TEST_DEPS_test_keys    := daemon/keys daemon/log proto/keyfile
TEST_DEPS_test_keyfile := proto/keyfile proto/wire daemon/keys daemon/log client/c/client client/c/dispatch client/c/batch client/c/epoch client/c/json client/c/discovery
TEST_DEPS_test_beneath := daemon/beneath
TEST_DEPS_test_imgops  := daemon/imgops daemon/imgops_geom daemon/imgops_avx2
TEST_DEPS_test_pool    := daemon/pool daemon/log
TEST_DEPS_test_bufpool := daemon/bufpool
TEST_DEPS_test_shm     := daemon/shm daemon/log proto/wire
TEST_DEPS_test_engine  := daemon/engine daemon/budget daemon/config daemon/config_options daemon/config_values daemon/config_check daemon/dataset daemon/dataset_scan daemon/dataset_manifest daemon/beneath daemon/shards daemon/tarindex daemon/pack daemon/source daemon/decode daemon/decode_io daemon/imgfmt daemon/splice daemon/digest daemon/sampler daemon/rng daemon/log daemon/policy daemon/info daemon/stats proto/wire
# batch and server run the whole pipeline: every daemon module but main.
TEST_DEPS_test_batch   := $(patsubst %.c,%,$(DAEMON_SRC) $(PROTO_SRC))
TEST_DEPS_test_server  := $(patsubst %.c,%,$(DAEMON_SRC) $(PROTO_SRC))

define unit_rule
$(BUILD)/tests/$(1): $(BUILD)/tests/unit/$(1).o $(call obj,$(UNIT_HELP)) $(addprefix $(BUILD)/,$(addsuffix .o,$(TEST_DEPS_$(1))))
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(FINAL_LDFLAGS) -o $$@ $$^ $$(FINAL_LIBS) -lcmocka
endef
$(foreach t,$(patsubst tests/unit/%.c,%,$(UNIT_SRC)),$(eval $(call unit_rule,$(t))))

# Small programs the integration tests drive (decode, resize, imgops).
TESTTOOL_SRC := $(wildcard tests/tools/*.c)
TESTTOOL_BIN := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TESTTOOL_SRC))
$(BUILD)/tools/%: $(BUILD)/tests/tools/%.o $(call obj,daemon/decode.c daemon/decode_io.c daemon/beneath.c daemon/imgfmt.c daemon/splice.c daemon/resize.c daemon/resize_simd.c daemon/log.c daemon/imgops.c daemon/imgops_geom.c daemon/imgops_avx2.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

deps:
	$(Q)scripts/deps.sh

test: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BIN) $(TESTTOOL_BIN)
	$(Q)PYTHON=$(PYTHON) BUILD=$(BUILD) CUTMIXD_BIN=$(abspath $(B))/cutmixd \
		CUTMIXD_COUNT_BIN=$(abspath $(B))/cutmixd-count scripts/run-tests.sh $(UNIT_BIN)

unit: all $(UNIT_BIN)
	$(Q)for t in $(UNIT_BIN); do $$t || exit 1; done

integration: all $(TESTTOOL_BIN)
	$(Q)$(PYTHON) -m pytest -q tests/integration

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) scripts/demo.py

bench:
	$(Q)scripts/deps.sh bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) scripts/bench.py
	$(Q)$(PYTHON) scripts/bench_index.py

# Soak (not part of `make test`): the real daemon for SOAK_SECONDS with two
# streaming clients, churn and SIGHUPs; RSS/fds asserted flat; CSV and
# summary in $(BUILD)/soak/. See docs/OPERATIONS.md.
SOAK_SECONDS ?= 600
soak: all
	$(Q)$(PYTHON) scripts/soak.py --seconds $(SOAK_SECONDS) --out $(BUILD)/soak \
		--bin $(abspath $(B))/cutmixd --count-bin $(abspath $(B))/cutmixd-count

SYSCONFDIR ?= /etc
# The folder the interpreter searches for this PREFIX (sysconfig's purelib;
# Debian: /usr/local/lib/python3.X/dist-packages for /usr/local).
PYDIR      ?= $(shell $(PYTHON) scripts/python_purelib.py $(PREFIX) 2>/dev/null)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/cutmixd
# Install paths into the templates (unit, pkg-config file, man pages).
SUBST = sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
	-e 's|@VERSION@|$(VERSION_STR)|g'
# The installed config: the annotated example with `root` pointing at a
# folder to edit (`cutmixd --check` names the key until it exists).
CONFIG_ROOT_EDIT = sed -e 's|^root = \.\./build/demo-data$$|; EDIT: the folder of your dataset (the unit may read /srv/datasets).\nroot = /srv/datasets/CHANGE-ME|'

# Man pages; cutmixd.ini(5) is generated from the daemon's options table
# (scripts/gen_ini_man.c), so the build fails when they disagree.
MAN_PAGES := $(BUILD)/man/cutmixd.8 $(BUILD)/man/cutmixd-count.1 $(BUILD)/man/cutmixd.ini.5
all: $(MAN_PAGES)
$(BUILD)/man/cutmixd.ini.5: man/cutmixd.ini.5.in $(B)/gen_ini_man
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$(B)/gen_ini_man $(VERSION_STR) < $< > $@.tmp && mv $@.tmp $@
$(BUILD)/man/%: man/%
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

install: all
	install -D -m 755 bin/cutmixd $(DESTDIR)$(PREFIX)/bin/cutmixd
	install -D -m 755 bin/cutmixd-count $(DESTDIR)$(PREFIX)/bin/cutmixd-count
	install -D -m 644 lib/libcutmixd.a $(DESTDIR)$(LIBDIR)/libcutmixd.a
	install -D -m 755 lib/libcutmixd.so $(DESTDIR)$(LIBDIR)/libcutmixd.so.0
	ln -sf libcutmixd.so.0 $(DESTDIR)$(LIBDIR)/libcutmixd.so
	install -D -m 644 client/c/cutmixd.h $(DESTDIR)$(INCLUDEDIR)/cutmixd.h
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig
	$(SUBST) scripts/cutmixd.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/cutmixd.pc
	@test -n "$(PYDIR)" || { echo "install: cannot find Python's purelib for $(PREFIX) (PYTHON=$(PYTHON)); set PYDIR=" >&2; exit 1; }
	@$(PYTHON) scripts/python_purelib.py $(PREFIX) >/dev/null
	install -d $(DESTDIR)$(PYDIR)/cutmixd
	install -m 644 client/python/cutmixd/*.py client/python/cutmixd/py.typed $(DESTDIR)$(PYDIR)/cutmixd/
	install -m 644 VERSION $(DESTDIR)$(PYDIR)/cutmixd/VERSION
	install -d $(DESTDIR)$(UNITDIR)
	$(SUBST) scripts/cutmixd.service.in > $(DESTDIR)$(UNITDIR)/cutmixd.service
	install -d $(DESTDIR)$(PREFIX)/share/cutmixd $(DESTDIR)$(SYSCONFDIR)/cutmixd
	$(CONFIG_ROOT_EDIT) config/default.ini > $(DESTDIR)$(PREFIX)/share/cutmixd/cutmixd.ini.example
	test -e $(DESTDIR)$(SYSCONFDIR)/cutmixd/cutmixd.ini || \
		$(CONFIG_ROOT_EDIT) config/default.ini > $(DESTDIR)$(SYSCONFDIR)/cutmixd/cutmixd.ini
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(SUBST) $(BUILD)/man/cutmixd.8 > $(DESTDIR)$(MANDIR)/man8/cutmixd.8
	$(SUBST) $(BUILD)/man/cutmixd.ini.5 > $(DESTDIR)$(MANDIR)/man5/cutmixd.ini.5
	$(SUBST) $(BUILD)/man/cutmixd-count.1 > $(DESTDIR)$(MANDIR)/man1/cutmixd-count.1
	install -D -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 644 -t $(DESTDIR)$(DOCDIR)/docs docs/*.md
	install -D -m 644 proto/PROTOCOL.md $(DESTDIR)$(DOCDIR)/proto/PROTOCOL.md
	install -D -m 644 -t $(DESTDIR)$(DOCDIR)/config config/*.ini
	install -D -m 644 -t $(DESTDIR)$(DOCDIR)/deploy/k8s deploy/k8s/*.yaml
	install -D -m 755 -t $(DESTDIR)$(DOCDIR)/deploy/slurm deploy/slurm/*.sbatch

# The whole suite on sanitizer builds (own folders, same tests).
SAN_FLAGS_asan := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_FLAGS_tsan := -fsanitize=thread
asan tsan: export TSAN_OPTIONS = suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0
asan tsan:
	$(Q)$(MAKE) --no-print-directory test OUT=build-$@ BUILD=build-$@/obj \
		OPT="-O1 -g $(SAN_FLAGS_$@)" LDFLAGS="$(SAN_FLAGS_$@)"

clean:
	rm -rf $(BUILD) bin lib build-asan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# libFuzzer targets: make fuzz, fuzz-smoke, fuzz-regress (see docs/FUZZING.md).
include tests/fuzz/Makefile.fuzz
