# The example programs of libsluice (examples/provider.c, examples/consumer.c),
# built as a user builds them: with pkg-config against the library, here the
# uninstalled one in build/ (build/sluice-uninstalled.pc, which pkg-config
# prefers when PKG_CONFIG_PATH points at build/). Included by the Makefile.
#
#   make examples   build/examples/provider, consumer (shared libsluice) and
#                   consumer-static (libsluice.a); and build/examples/asan/*,
#                   the same programs with libsluice's sources compiled in
#                   with ASan+UBSan, for the integration tests

EXAMPLES := build/examples/provider build/examples/consumer build/examples/consumer-static \
	build/examples/asan/provider build/examples/asan/consumer
EXAMPLE_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g
# pkg-config as a user runs it, pointed at the uninstalled library.
EXAMPLE_PKG = PKG_CONFIG_PATH=$(CURDIR)/build pkg-config

.PHONY: examples
examples: $(EXAMPLES)

# The uninstalled variant: headers from include/, the library from build/,
# with an rpath so the programs run from the tree.
build/sluice-uninstalled.pc: src/client/sluice.pc.in examples/examples.mk
	@mkdir -p build
	sed -e 's|@PREFIX@|$(CURDIR)|' -e 's|@LIBDIR@|$(CURDIR)/build|' -e 's|@INCLUDEDIR@|$(CURDIR)/include|' \
		-e 's|@VERSION@|$(LIBSLUICE_VERSION)|' -e 's|^Libs: .*|& -Wl,-rpath,$${libdir}|' $< > $@

build/examples/%: examples/%.c include/sluice/sluice.h build/libsluice.so build/sluice-uninstalled.pc
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $$($(EXAMPLE_PKG) --cflags --libs sluice)

# The same consumer linked with the static library: libsluice.a, then what it
# needs itself (libcurl, jansson, pthreads).
build/examples/consumer-static: examples/consumer.c include/sluice/sluice.h build/libsluice.a build/sluice-uninstalled.pc
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $$($(EXAMPLE_PKG) --cflags sluice) build/libsluice.a \
		$$($(EXAMPLE_PKG) --libs libcurl jansson) -lpthread

# With the sanitizers, as the unit tests are built: the integration tests run
# these where they want libsluice itself checked.
build/examples/asan/%: examples/%.c $(LIBSLUICE_SRC) $(wildcard src/client/*.h src/lib/*.h) include/sluice/sluice.h
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(BASEFLAGS)) -O1 $(SAN) -o $@ $< $(LIBSLUICE_SRC) $(LIBSLUICE_LIBS)

# The integration tests run the examples as real clients.
test integration: examples
