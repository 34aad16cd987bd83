# Sluice build.
#
#   make            release binary build/sluice
#   make test       deps, unit tests (ASan+UBSan), integration tests, short fuzz runs
#   make demo       the L7 proxy demo (no root needed)
#   make fuzz       longer fuzz runs (FUZZ_SECONDS each, default 60)
#   make bench-l7   bench/l7.sh: Sluice vs nginx vs HAProxy
#   make test-bpf   XDP forwarder packet fixtures (src/l4/l4.mk)
#   make bench-l4   bench/l4.sh: XDP forwarder vs nftables DNAT (root)

CC      ?= gcc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -Isrc $(WARN) -g
CFLAGS  ?= -O2
LIBS    := -lyaml -ljansson -lm

SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# src/l4 (the XDP forwarder) is built by its own rules in src/l4/l4.mk, which
# also links the `sluice l4` control plane (src/l4/*.c) into build/sluice.
ALL_SRC := $(shell find src -name '*.c' -not -path 'src/l4/*' | sort)
LIB_SRC := $(filter-out src/cmd/main.c,$(ALL_SRC))
HDRS    := $(shell find src -name '*.h' -not -path 'src/l4/*' | sort)

OBJ      := $(ALL_SRC:%.c=build/obj/%.o)
ASAN_OBJ := $(ALL_SRC:%.c=build/asan/%.o)
ASAN_LIB_OBJ := $(LIB_SRC:%.c=build/asan/%.o)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/tests/%)

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps test unit integration fuzz-smoke fuzz demo bench-l7 bench-l4 clean asan

all: build/sluice

build/sluice: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

build/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c -o $@ $<

# The sanitizer build of the binary: integration tests run this one.
asan: build/sluice-asan
build/sluice-asan: $(ASAN_OBJ)
	$(CC) $(SAN) -o $@ $^ $(LIBS)

build/asan/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) -c -o $@ $<

build/tests/%: tests/unit/%.c $(ASAN_LIB_OBJ) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) -O1 $(SAN) -Itests/unit -o $@ $< $(ASAN_LIB_OBJ) $(LIBS) -lcmocka

build/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(BASEFLAGS) -Wno-unknown-warning-option -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRC) $(LIBS)

deps:
	@bash scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory build/sluice build/sluice-asan $(UNIT_BIN) $(FUZZ_BIN) build/l4/test_forwarder
	@bash tests/run.sh

unit: $(UNIT_BIN)
	@bash tests/run.sh unit

integration: build/sluice build/sluice-asan
	@bash tests/run.sh integration

fuzz-smoke: $(FUZZ_BIN)
	@bash tests/run.sh fuzz

fuzz: $(FUZZ_BIN)
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash tests/run.sh fuzz

demo: deps build/sluice
	@bash scripts/demo.sh

bench-l7: deps build/sluice
	@bash bench/l7.sh

bench-l4: deps build/sluice build/l4/l4_bench
	@bash bench/l4.sh

clean:
	rm -rf build

-include src/l4/l4.mk
