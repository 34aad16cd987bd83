# Sluice L4 (XDP) build rules, included at the end of the top-level Makefile.
#
#   make l4-bpf          BPF objects and libbpf skeletons in build/l4/
#   make test-bpf        packet-fixture tests through BPF_PROG_TEST_RUN (root;
#                        as non-root they skip and exit 0); SUITES="nat toa"
#                        runs only those suites (tests/bpf/test_*.c)
#   make bench-l4-floor  ns/packet: table hit, miss, and the MAC-swap floor
#
# vmlinux.h and the skeletons are generated here at build time and never
# committed.

L4_OUT      := build/l4
BPFTOOL     ?= bpftool
L4_VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
L4_BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_x86 -I$(L4_OUT) -Isrc -Wall -Werror

L4_BPF_SRC  := $(wildcard src/l4/bpf/*.bpf.c)
L4_BPF_HDRS := $(wildcard src/l4/bpf/*.h)
# The published map contracts (l4_abi_common.h, forwarder_abi.h, toa_abi.h,
# decap_abi.h): included by user space too. The other headers in
# src/l4/bpf are the forwarder's own, split by concern.
L4_ABI_HDRS := $(wildcard src/l4/bpf/*_abi*.h)
L4_BPF_OBJ  := $(L4_BPF_SRC:src/l4/bpf/%.bpf.c=$(L4_OUT)/%.bpf.o)
L4_SKELS    := $(L4_BPF_SRC:src/l4/bpf/%.bpf.c=$(L4_OUT)/%.skel.h)

# User-space test and bench programs: libbpf, plus the Maglev builder and
# hash from src/core so the tests check the kernel against the same code the
# control plane uses.
L4_USER_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Isrc -I$(L4_OUT) -Itests/bpf \
                  -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -g -O2
L4_USER_LIBS    = $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf) -lelf -lz
L4_LIB_SRC    := src/lib/maglev.c src/lib/hash.c
L4_TESTLIB     := tests/bpf/l4_testlib.c
L4_TESTLIB_HDR := tests/bpf/l4_testlib.h

.PHONY: l4-bpf test-bpf bench-l4-floor

# Keep the objects when make reaches them only through a skeleton.
.SECONDARY: $(L4_BPF_OBJ) $(L4_OUT)/vmlinux.h

l4-bpf: $(L4_BPF_OBJ) $(L4_SKELS)

$(L4_OUT)/vmlinux.h:
	@mkdir -p $(L4_OUT)
	$(BPFTOOL) btf dump file $(L4_VMLINUX_BTF) format c > $@.tmp
	@mv $@.tmp $@

$(L4_OUT)/%.bpf.o: src/l4/bpf/%.bpf.c $(L4_BPF_HDRS) $(L4_OUT)/vmlinux.h
	$(CLANG) $(L4_BPF_CFLAGS) -c $< -o $@

$(L4_OUT)/%.skel.h: $(L4_OUT)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $(subst .bpf.o,,$(notdir $<)) > $@.tmp
	@mv $@.tmp $@

# The fixtures: one runner (tests/bpf/test_forwarder.c) over the world they
# share (tests/bpf/fixtures.[ch]) and one suite per feature file
# (tests/bpf/test_*.c). src/proxy/toa_lookup.c: the TOA fixtures test the
# lookup helper too; src/l4/conns.c: and the connection counts.
L4_FIXTURE_SRC := $(sort tests/bpf/fixtures.c $(wildcard tests/bpf/test_*.c))
L4_FIXTURE_HDR := tests/bpf/fixtures.h

$(L4_OUT)/test_forwarder: $(L4_FIXTURE_SRC) $(L4_FIXTURE_HDR) $(L4_TESTLIB) $(L4_TESTLIB_HDR) \
                          $(L4_LIB_SRC) $(L4_BPF_HDRS) $(L4_SKELS) src/proxy/toa_lookup.c src/proxy/toa_lookup.h \
                          src/l4/conns.c src/l4/conns.h
	$(CC) $(L4_USER_CFLAGS) -o $@ $(L4_FIXTURE_SRC) $(L4_TESTLIB) $(L4_LIB_SRC) src/proxy/toa_lookup.c \
	      src/l4/conns.c $(L4_USER_LIBS)

$(L4_OUT)/l4_bench: tests/bpf/l4_bench.c $(L4_TESTLIB) $(L4_TESTLIB_HDR) \
                    $(L4_LIB_SRC) $(L4_BPF_HDRS) $(L4_SKELS) src/l4/sync_wire.c src/l4/sync_wire.h
	$(CC) $(L4_USER_CFLAGS) -o $@ tests/bpf/l4_bench.c $(L4_TESTLIB) $(L4_LIB_SRC) src/l4/sync_wire.c \
	      $(L4_USER_LIBS) -lcrypto

test-bpf: $(L4_OUT)/test_forwarder
	@$(L4_OUT)/test_forwarder $(SUITES)

bench-l4-floor: $(L4_OUT)/l4_bench
	@$(L4_OUT)/l4_bench

# ---- the control plane: `sluice l4` ----
# src/l4/*.c (not bpf/) is the l4 tier's library, libsluice-l4.a, linked
# into build/sluice and build/sluice-asan. The unit tests and fuzzers of
# the top-level Makefile do not link it, so they need no libbpf or
# skeleton; the l4 tier's own unit tests are built below.
TIERS += l4
$(eval $(call layer_rules,l4))
L4_CP_SRC      := $(call layer_src,l4)
L4_CP_OBJ      := $(L4_CP_SRC:%.c=build/obj/%.o)
L4_CP_ASAN_OBJ := $(L4_CP_SRC:%.c=build/asan/%.o)

build/sluice: $(call layer_lib,l4,obj)
build/sluice-asan: $(call layer_lib,l4,asan)
$(L4_CP_OBJ) $(L4_CP_ASAN_OBJ): BASEFLAGS += -I$(L4_OUT)
# Generated headers must exist before the first compile (later, -MMD's
# dependency files name them).
$(L4_CP_OBJ) $(L4_CP_ASAN_OBJ): $(L4_OUT)/forwarder.skel.h
build/obj/src/cmd/main.o build/asan/src/cmd/main.o: BASEFLAGS += -I$(L4_OUT)

# Recipes expand LIBS when they run, after this line has been read.
LIBS += $(L4_USER_LIBS)

# `make demo-l4` (root): sluice l4 in each mode (DR, TUN, NAT, FullNAT) between
# network namespaces.
.PHONY: demo-l4
demo-l4: build/sluice
	@bash scripts/demo-l4.sh

# ---- unit tests of the l4 tier (no kernel, no root) ----
# tests/unit/test_l4_*.c are in the top-level UNIT_BIN (make unit, the unit
# phase of make test) like the other unit tests; this static pattern rule
# links them with the l4 tier's archive before the others. The linker takes
# only the objects a test uses: the pure parts (tables.c, stats.c,
# l4_conf.c) do no map I/O, which is in tables_maps.c and stats_maps.c.
L4_UNIT_BIN := $(patsubst tests/unit/%.c,build/tests/%,$(wildcard tests/unit/test_l4_*.c))

$(L4_UNIT_BIN): build/tests/%: tests/unit/%.c $(call layer_lib,l4,asan) $(UNIT_LIBS) $(L4_OUT)/forwarder.skel.h
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -I$(L4_OUT) -O1 $(SAN) -Itests/unit -o $@ $< $(call layer_lib,l4,asan) $(UNIT_LIBS) \
	      $(LIBS) -lcmocka

# `sluice l4 decap` (src/l4/decap.c) includes the decap program's skeleton.
build/obj/src/l4/decap.o build/asan/src/l4/decap.o: $(L4_OUT)/decap.skel.h

# ---- libFuzzer targets on the real BPF programs (BPF_PROG_TEST_RUN) ----
# tests/fuzz/fuzz_l4_*.c are in the top-level FUZZ_BIN (make fuzz, make
# fuzz-smoke, the fuzz phase of make test) like the other targets, but they
# link libbpf, the skeletons and the fixtures' helpers instead of src/: this
# static pattern rule takes them out of the generic build/fuzz/% rule. As
# non-root they print "skip: ..." and exit 0 (tests/run.sh counts a skip).
L4_FUZZ_BIN := $(filter-out build/fuzz/fuzz_l4_sync,$(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_l4_*.c)))

# The l4.sync wire decoder is pure code: its target links only that file
# (and OpenSSL for the MAC), no kernel, so it runs as any user.
build/fuzz/fuzz_l4_sync: tests/fuzz/fuzz_l4_sync.c src/l4/sync_wire.c src/l4/sync_wire.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< src/l4/sync_wire.c -lcrypto

$(L4_FUZZ_BIN): build/fuzz/%: tests/fuzz/%.c $(L4_TESTLIB) $(L4_TESTLIB_HDR) $(L4_LIB_SRC) $(L4_BPF_HDRS) \
                $(L4_SKELS) tests/fuzz/l4_fuzz_report.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -I$(L4_OUT) -Itests/bpf -o $@ $< $(L4_TESTLIB) $(L4_LIB_SRC) $(L4_USER_LIBS)

# The other fuzzers compile src/core/config.c and src/proxy/toa_lookup.c (see above).
$(filter-out $(L4_FUZZ_BIN),$(FUZZ_BIN)): $(L4_ABI_HDRS)
