# Sluice build.
#
#   make            release binary build/sluice
#   make test       deps, unit tests (ASan+UBSan), integration tests, short fuzz runs
#   make demo       the L7 proxy demo (no root needed)
#   make demo-registry  the registry demo: CLI, dig, locality, weights, fail-open; libsluice, the agent and a discovered pool through an outage (no root needed)
#   make fuzz       longer fuzz runs (FUZZ_SECONDS each, default 60)
#   make install    sbin/sluice, libsluice, man pages, systemd units, examples, bash completion under PREFIX (/usr/local), DESTDIR
#   make man        build/man/sluice.8 and sluice.yaml.5 from docs/ (pandoc)
#   make deb        the Debian packages in build/deb (debian/; lintian must find no error)
#   make test-deb   the package installed in a debootstrapped Debian 12 and its proxy started there (root, network)
#   make proxy-only sluice without the l4 tier: no clang, bpftool or libbpf needed (also: make WITHOUT=l4)
#   make tsan-client  libsluice's pick/swap stress test under ThreadSanitizer
#   make bench-l7   bench/l7.sh: Sluice vs nginx vs HAProxy
#   make test-bpf   XDP forwarder packet fixtures (src/l4/l4.mk)
#   make bench-l4   bench/l4.sh: XDP forwarder vs nftables DNAT (root)
#   make bench-registry-model  bench/reg_bench.c: registry answers and store writes/s
#   make bench-dns-codec  CPU ns per query of the DNS codec (parse + answer)
#   make bench-registry   bench/registry.sh: registrations/s, heartbeats/s, watch latency, etcd floor
#   make bench-client  bench/client_pick.c: ns per libsluice pick (1 and 2 threads, weighted and p2c)
#   make bench-dns  bench/dns.sh: the registry's DNS vs NSD vs Knot (dnsperf)
#   make bench-agent  bench/agent.sh: the DNS agent's cached names vs Unbound's local zone (dnsperf)
#   make bench-tls  bench/tls.sh: TLS handshakes, resumption, HTTPS keep-alive, HTTP/2, handshake isolation: Sluice vs nginx vs HAProxy
#   make demo-ha    the HA lab: BGP routes over zones, `sluice ha status`, a crash, a cut link, a drain, a zone lost and restored, under traffic (root)
#   make bench-ha   bench/ha.sh: failover gap of Sluice (BGP + BFD) vs keepalived VRRP, crash and drain (root; QUICK=1: 3 repetitions)

CC      ?= gcc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
# -MMD -MP: each object records the headers it read (build/**/*.d), so a
# header change rebuilds only what includes it.
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -Isrc -Iinclude $(WARN) -g -MMD -MP
CFLAGS  ?= -O2
LIBS    := -lyaml -ljansson -lsqlite3 -lcurl -lssl -lcrypto -lnghttp2 -lsystemd -lm -lpthread

SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# The layers (docs/architecture.md): lib <- core <- tiers <- cmd. Each of
# lib, core and every tier is a static library, build/obj/libsluice-X.a
# (release) and build/asan/libsluice-X.a (sanitizers); the binary and the
# unit tests link the ones they need, tiers first. Every folder under src/
# other than lib, core, cmd and client is a tier and is picked up by itself.
# A tier that needs rules of its own keeps them in src/TIER/TIER.mk (included
# below), which builds its archive and appends it to TIERS; src/l4 does,
# because it needs the BPF toolchain. PLAIN_TIERS are the others: the unit
# tests and the fuzz targets link them.
#
# WITHOUT=TIER... leaves tiers out of the binary: `make WITHOUT=l4` (or
# `make proxy-only`) builds a sluice without the XDP forwarder, so without
# clang, bpftool or libbpf. The executable's module list is generated from
# the tiers built (build/gen/sluice_modules.h, see below).
WITHOUT     ?=
MK_TIERS    := $(filter-out $(WITHOUT),$(patsubst src/%/,%,$(dir $(wildcard src/*/*.mk))))
PLAIN_TIERS := $(filter-out lib core cmd client $(MK_TIERS) $(WITHOUT),$(patsubst src/%/,%,$(sort $(dir $(wildcard src/*/)))))
TIERS   := $(PLAIN_TIERS)
layer_src = $(sort $(wildcard src/$(1)/*.c))
layer_lib = build/$(2)/libsluice-$(1).a

CMD_SRC := $(call layer_src,cmd)
CMD_OBJ := $(CMD_SRC:%.c=build/obj/%.o)
CMD_ASAN_OBJ := $(CMD_SRC:%.c=build/asan/%.o)

# One archive per layer, in both builds.
define layer_rules
$(call layer_lib,$(1),obj): $$(patsubst %.c,build/obj/%.o,$$(call layer_src,$(1)))
$(call layer_lib,$(1),asan): $$(patsubst %.c,build/asan/%.o,$$(call layer_src,$(1)))
endef
$(foreach l,lib core client $(TIERS),$(eval $(call layer_rules,$(l))))

%.a:
	@rm -f $@
	ar rcs $@ $^

# Link order: tiers, then core, then client (libsluice: tiers use it through
# include/sluice/sluice.h), then lib (each may use only those after it).
# Expanded when the recipe runs, so tiers added by a TIER.mk are in it.
link_libs = $(foreach l,$(TIERS) core client lib,$(call layer_lib,$(l),$(1)))

# Fuzz targets are built by clang with libFuzzer from the sources of lib,
# core, the client and the plain tiers (not from the gcc archives), plus
# every tier's config section (src/TIER/TIER_conf.c: pure code, so
# fuzz_config reads whole files). Those sources are compiled once, with
# their dependency files, into build/fuzz/obj and one archive that every
# target links: a target compiles only its own file.
FUZZ_CFLAGS = $(filter-out -MMD -MP,$(BASEFLAGS)) -Wno-unknown-warning-option -O1 -fsanitize=fuzzer,address,undefined
FUZZ_OBJ_CFLAGS = $(BASEFLAGS) -Wno-unknown-warning-option -O1 -fsanitize=fuzzer-no-link,address,undefined
SECTION_SRC := $(filter-out $(foreach l,lib core cmd $(PLAIN_TIERS),src/$(l)/%),$(wildcard src/*/*_conf.c))
LIB_SRC := $(foreach l,lib core client $(PLAIN_TIERS),$(call layer_src,$(l))) $(SECTION_SRC)
FUZZ_HDRS := $(wildcard $(foreach l,lib core client $(PLAIN_TIERS),src/$(l)/*.h)) $(SECTION_SRC:.c=.h) include/sluice/sluice.h

# libsluice's public artifacts (rules at the end).
LIBSLUICE_ARTIFACTS := build/libsluice.a build/libsluice.so build/sluice.pc

UNIT_SRC := $(filter-out $(WITHOUT:%=tests/unit/test_%_%),$(sort $(wildcard tests/unit/test_*.c)))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/tests/%)

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: install install-lib tsan-client all deps test unit integration fuzz-smoke fuzz demo demo-registry bench-l7 bench-l4 bench-registry-model bench-registry bench-dns-codec bench-dns clean asan layers

all: build/sluice $(LIBSLUICE_ARTIFACTS)

# The L7 proxy (and every tier but l4) without the BPF toolchain.
.PHONY: proxy-only
proxy-only:
	@$(MAKE) --no-print-directory WITHOUT="l4 $(WITHOUT)" build/sluice

# The executable's modules: one per tier built (each tier TIER exports
# TIER_module from src/TIER/TIER_module.h), in MODULE_ORDER (verbs are
# looked up and `sluice check`'s summary is written in this order), then
# any other tier by name. Rewritten only when the list changes, so main.o
# is rebuilt when WITHOUT changes and not otherwise.
MODULE_ORDER := proxy l4 registry agent ha
built_modules = $(filter $(TIERS),$(MODULE_ORDER)) $(sort $(filter-out $(MODULE_ORDER),$(TIERS)))
.PHONY: FORCE
build/gen/sluice_modules.h: FORCE
	@mkdir -p $(dir $@)
	@{ echo '/* Generated by the Makefile from the tiers built: do not edit. */'; \
	  for m in $(built_modules); do echo "#include \"$$m/$${m}_module.h\""; done; \
	  printf '#define SLUICE_MODULES'; for m in $(built_modules); do printf ' &%s_module,' $$m; done; echo; \
	  printf '#define SLUICE_MODULE_NAMES "%s"\n' "$(strip $(built_modules))"; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
build/obj/src/cmd/main.o build/asan/src/cmd/main.o: build/gen/sluice_modules.h
build/obj/src/cmd/main.o build/asan/src/cmd/main.o: BASEFLAGS += -Ibuild/gen

build/sluice: $(CMD_OBJ) $(call link_libs,obj)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CMD_OBJ) $(call link_libs,obj) $(LIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The sanitizer build of the binary: integration tests run this one.
asan: build/sluice-asan
build/sluice-asan: $(CMD_ASAN_OBJ) $(call link_libs,asan)
	$(CC) $(SAN) -o $@ $(CMD_ASAN_OBJ) $(call link_libs,asan) $(LIBS)

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) -c -o $@ $<

# `sluice version` names the commit it was built from: git describe of
# this checkout ("unknown" outside git). build/git-commit changes only
# when the commit does, and only proc_verbs.o is rebuilt then.
GIT_COMMIT := $(shell git -C $(CURDIR) describe --always --dirty 2>/dev/null || echo unknown)
$(shell mkdir -p build && (echo '$(GIT_COMMIT)' | cmp -s - build/git-commit || echo '$(GIT_COMMIT)' > build/git-commit))
build/obj/src/cmd/proc_verbs.o build/asan/src/cmd/proc_verbs.o: build/git-commit
build/obj/src/cmd/proc_verbs.o build/asan/src/cmd/proc_verbs.o: BASEFLAGS += -DSLUICE_GIT_COMMIT='"$(GIT_COMMIT)"'

# Unit tests link the plain tiers', core's and lib's archives (the linker takes only
# the objects a test uses); src/l4's unit tests are built by l4.mk.
UNIT_LIBS = $(foreach l,$(PLAIN_TIERS) core client lib,$(call layer_lib,$(l),asan))
build/tests/%: tests/unit/%.c $(foreach l,$(PLAIN_TIERS) core client lib,$(call layer_lib,$(l),asan))
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) -Itests/unit -o $@ $< $(UNIT_LIBS) $(LIBS) -lcmocka

FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_OBJ_CFLAGS) -c -o $@ $<
build/fuzz/obj/libfuzzsrc.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: tests/fuzz/%.c build/fuzz/obj/libfuzzsrc.a $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< build/fuzz/obj/libfuzzsrc.a $(LIBS)

# The HA probe engine's test driver (tests/integration/test_ha_probe.py):
# the real engine on a real event loop, one JSON answer.
HA_PROBE_DRIVER_LIBS = $(foreach l,ha core lib,$(call layer_lib,$(l),asan))
build/tests-tools/ha_probe_driver: tests/integration/ha_probe_driver.c $(HA_PROBE_DRIVER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) -o $@ $< $(HA_PROBE_DRIVER_LIBS) $(LIBS)

# The example programs of libsluice: `make examples` (examples/examples.mk).
include examples/examples.mk

# The include rule of the layers, and a check of the checker.
layers:
	@bash scripts/check-layers.sh
	@bash scripts/check-layers.sh --self-test

deps:
	@bash scripts/deps.sh

# The build before the tests runs one job per CPU (BUILD_JOBS to change it).
BUILD_JOBS ?= $(shell nproc)
test: deps
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) build/sluice build/sluice-asan $(UNIT_BIN) $(FUZZ_BIN) build/l4/test_forwarder $(LIBSLUICE_ARTIFACTS) build/bench/tls_load build/tests-tools/ha_probe_driver
	@bash tests/run.sh

unit: $(UNIT_BIN)
	@bash tests/run.sh unit

integration: build/sluice build/sluice-asan build/bench/tls_load
	@bash tests/run.sh integration

fuzz-smoke: $(FUZZ_BIN)
	@bash tests/run.sh fuzz

fuzz: $(FUZZ_BIN)
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash tests/run.sh fuzz

demo: deps build/sluice
	@bash scripts/demo.sh

demo-registry: deps build/sluice examples
	@bash scripts/demo-registry.sh

.PHONY: demo-ha bench-ha
demo-ha: deps build/sluice
	@bash scripts/demo-ha.sh

bench-ha: deps build/sluice
	@bash bench/ha.sh

bench-l7: deps build/sluice
	@bash bench/l7.sh

bench-l4: deps build/sluice build/l4/l4_bench
	@bash bench/l4.sh

# The registry's model and store, measured (a release build, no daemon).
REG_BENCH_LIBS = $(foreach l,registry core lib,$(call layer_lib,$(l),obj))
build/bench/reg_bench: bench/reg_bench.c $(REG_BENCH_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(REG_BENCH_LIBS) $(LIBS)

bench-registry-model: deps build/bench/reg_bench
	@build/bench/reg_bench

# Through the public API, linked as a user links it (libsluice.a).
build/bench/client_pick: bench/client_pick.c include/sluice/sluice.h build/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -g -Iinclude -o $@ $< build/libsluice.a -lcurl -ljansson -lpthread

.PHONY: bench-client
bench-client: build/bench/client_pick
	@build/bench/client_pick 100 2

# The registry's API under load (bench/reg_load.c is the client).
build/bench/reg_load: bench/reg_load.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $<

bench-registry: deps build/sluice build/bench/reg_load
	@bash bench/registry.sh

bench-dns-codec: build/bench/dns_codec_bench
	@build/bench/dns_codec_bench

build/bench/dns_codec_bench: bench/dns/codec_bench.c $(call layer_lib,lib,obj)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(call layer_lib,lib,obj)

# The registry's DNS server on a filled model (a release build), against
# NSD and Knot serving the equivalent static zone.
build/bench/reg_dns_serve: bench/dns/reg_dns_serve.c $(REG_BENCH_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(REG_BENCH_LIBS) $(LIBS)

bench-dns: deps build/bench/reg_dns_serve
	@bash bench/dns.sh

.PHONY: bench-agent
bench-agent: deps build/sluice
	@bash bench/agent.sh

# TLS handshakes and HTTPS under load (bench/tls_load.c is the client: on
# OpenSSL, reading responses with lib's HTTP/1 parser).
build/bench/tls_load: bench/tls_load.c $(call layer_lib,lib,obj)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(call layer_lib,lib,obj) -lssl -lcrypto

.PHONY: bench-tls
bench-tls: deps build/sluice build/bench/tls_load
	@bash bench/tls.sh

clean:
	rm -rf build

# ---- libsluice: the public library (include/sluice/sluice.h) ------------
#
# Built apart from the layer archives: position-independent, with every
# symbol hidden but the API's (src/client/client_priv.h declares the header's
# functions with default visibility; the version script is the second lock
# for the shared library). The static library is one relocatable object
# whose hidden symbols objcopy made local, so a program linking it sees
# only sluice_* too, and never clashes with libsluice's internal names.
LIBSLUICE_VERSION := 0.1.0
LIBSLUICE_SONAME  := libsluice.so.0
# The client and the pure lib code it uses (nothing of core, no daemon).
LIBSLUICE_SRC := $(call layer_src,client) src/lib/errbuf.c src/lib/hash.c src/lib/locality.c
LIBSLUICE_PIC := $(LIBSLUICE_SRC:%.c=build/pic/%.o)
LIBSLUICE_LIBS := -lcurl -ljansson -lpthread

build/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

build/libsluice.so.$(LIBSLUICE_VERSION): $(LIBSLUICE_PIC) src/client/libsluice.map
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(LIBSLUICE_SONAME) -Wl,--version-script=src/client/libsluice.map \
		-Wl,--no-undefined -o $@ $(LIBSLUICE_PIC) $(LIBSLUICE_LIBS)

build/$(LIBSLUICE_SONAME): build/libsluice.so.$(LIBSLUICE_VERSION)
	ln -sf libsluice.so.$(LIBSLUICE_VERSION) $@

build/libsluice.so: build/$(LIBSLUICE_SONAME)
	ln -sf $(LIBSLUICE_SONAME) $@

build/libsluice.a: $(LIBSLUICE_PIC)
	ld -r -o build/pic/libsluice.o $(LIBSLUICE_PIC)
	objcopy --localize-hidden build/pic/libsluice.o
	@rm -f $@
	ar rcs $@ build/pic/libsluice.o

# The pick/swap stress test under ThreadSanitizer: the grace periods and
# the pick state are lock-free, so TSan checks what ASan cannot.
build/tsan/test_client_pick: tests/unit/test_client_pick.c tests/unit/client_helpers.h $(LIBSLUICE_SRC) $(wildcard src/client/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(BASEFLAGS)) -O1 -fsanitize=thread -Itests/unit -o $@ $< $(LIBSLUICE_SRC) \
		$(LIBSLUICE_LIBS) -lcmocka

tsan-client: build/tsan/test_client_pick
	TSAN_OPTIONS=halt_on_error=1 build/tsan/test_client_pick

# PREFIX and DESTDIR as usual: `make install PREFIX=/usr DESTDIR=/tmp/pkg`.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
pc_text = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	-e 's|@VERSION@|$(LIBSLUICE_VERSION)|' src/client/sluice.pc.in

build/sluice.pc: src/client/sluice.pc.in Makefile
	@mkdir -p build
	$(pc_text) > $@

# `install` is the sum of install-* targets: a new part adds its own
# install-X and lists it here.
# All but install-lib are in packaging/packaging.mk.
install: install-lib install-bin install-man install-units install-examples install-completion

install-lib: build/libsluice.a build/libsluice.so
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/sluice $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 build/libsluice.a $(DESTDIR)$(LIBDIR)/libsluice.a
	install -m 755 build/libsluice.so.$(LIBSLUICE_VERSION) $(DESTDIR)$(LIBDIR)/libsluice.so.$(LIBSLUICE_VERSION)
	ln -sf libsluice.so.$(LIBSLUICE_VERSION) $(DESTDIR)$(LIBDIR)/$(LIBSLUICE_SONAME)
	ln -sf $(LIBSLUICE_SONAME) $(DESTDIR)$(LIBDIR)/libsluice.so
	install -m 644 include/sluice/sluice.h $(DESTDIR)$(INCLUDEDIR)/sluice/sluice.h
	$(pc_text) > $(DESTDIR)$(PKGCONFIGDIR)/sluice.pc

# install-bin, install-man, install-units, install-examples,
# install-completion, man, deb, test-deb.
include packaging/packaging.mk

-include $(foreach t,$(MK_TIERS),src/$(t)/$(t).mk)

# Headers each object read last time it was built (see -MMD above).
# (Not under build/deb*: a Debian root made by the package test has
# directories such as etc/rc2.d.)
-include $(shell find build -path 'build/deb*' -prune -o -name '*.d' -type f -print 2>/dev/null)
