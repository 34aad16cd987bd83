# Installing and packaging, included by the top-level Makefile (after its
# PREFIX, LIBDIR and install-lib):
#
#   install-bin         sbin/sluice (system daemons live in sbin, as nginx's and haproxy's)
#   install-man         sluice(8), sluice.yaml(5) (make man)
#   install-units       the systemd units of each daemon (packaging/systemd)
#   install-examples    configuration examples and unit drop-ins in
#                       DOCDIR/examples; the proxy's default
#                       SYSCONFDIR/sluice/sluice.yaml unless one is there
#   install-completion  bash completion of the verbs and options
#   man                 build/man/sluice.8 and sluice.yaml.5 (pandoc)
#   deb                 the Debian packages in build/deb (debian/)
#   test-deb            tests/integration/test_deb.py (root, network)
#
# `make install PREFIX=/usr` puts the configuration in /etc and the units
# where systemd's own are; a PREFIX of /usr/local, in /usr/local/etc and
# /usr/local/lib/systemd/system (which systemd also reads).

SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/sluice
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
SYSTEMDUNITDIR ?= $(if $(filter /usr,$(PREFIX)),$(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system),$(PREFIX)/lib/systemd/system)
UNITS := $(patsubst packaging/systemd/%.in,%,$(wildcard packaging/systemd/*.service.in))

install-bin: build/sluice
	install -d $(DESTDIR)$(SBINDIR)
	install -m 755 build/sluice $(DESTDIR)$(SBINDIR)/sluice

install-man: man
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 644 build/man/sluice.8 $(DESTDIR)$(MANDIR)/man8/sluice.8
	install -m 644 build/man/sluice.yaml.5 $(DESTDIR)$(MANDIR)/man5/sluice.yaml.5

# The units name the binary and the files where this install puts them.
unit_text = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'
install-units:
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for u in $(UNITS); do $(unit_text) packaging/systemd/$$u.in > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u && \
		chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; done

install-examples:
	install -d $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSCONFDIR)/sluice
	install -m 644 packaging/examples/*.yaml $(DESTDIR)$(DOCDIR)/examples/
	install -d $(DESTDIR)$(DOCDIR)/examples/systemd
	install -m 644 packaging/systemd/drop-ins/*.conf $(DESTDIR)$(DOCDIR)/examples/systemd/
	test -e $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml || \
		install -m 644 packaging/examples/sluice.yaml $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml

install-completion:
	install -d $(DESTDIR)$(BASHCOMPDIR)
	install -m 644 packaging/completion/sluice.bash $(DESTDIR)$(BASHCOMPDIR)/sluice

.PHONY: install-bin install-man install-units install-examples install-completion man deb test-deb

# ---- the Debian package: make deb -> build/deb/*.deb ----
# dpkg-buildpackage (debian/) in a clean copy of the sources under
# build/deb/, so neither this tree's build/ nor its flags leak into the
# package; lintian then checks the result and fails the target on an error
# (its warnings are printed; docs/operations.md lists the known ones).
DEB_SRC_PARTS := Makefile README.md src include examples scripts packaging docs debian
DEB_DIR := build/deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/sluice
	cp -a $(DEB_SRC_PARTS) $(DEB_DIR)/sluice/
	cd $(DEB_DIR)/sluice && DEB_BUILD_OPTIONS="parallel=$${JOBS:-2} $$DEB_BUILD_OPTIONS" \
		dpkg-buildpackage -us -uc -b --no-sign > ../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	rm -rf $(DEB_DIR)/sluice
	lintian --fail-on error --tag-display-limit 0 $(DEB_DIR)/*.changes
	@ls -1 $(DEB_DIR)/*.deb

# The package installed in a throwaway Debian 12 root (debootstrap) and
# its proxy started there: tests/integration/test_deb.py, minutes long, so
# not part of `make test` (root, network to the Debian mirror).
test-deb: deps
	SLUICE_TEST_DEB=1 $(PYTHON) -m pytest -q -s -rs tests/integration/test_deb.py -p no:cacheprovider

# ---- man pages: sluice(8) and sluice.yaml(5), from the docs (pandoc) ----
# docs/sluice.8.md is the page of the executable; sluice.yaml(5) is
# docs/configuration.md under a NAME/SYNOPSIS head. The date is the
# build's (SOURCE_DATE_EPOCH when a package build sets it).
MAN_DATE = $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%d)
MAN_META = -M footer="sluice $(SLUICE_PKG_VERSION)" -M date="$(MAN_DATE)" --lua-filter=packaging/man/tables-to-lists.lua
SLUICE_PKG_VERSION = $(shell sed -n 's/^\#define SLUICE_VERSION "\(.*\)"/\1/p' src/core/version.h)
man: build/man/sluice.8 build/man/sluice.yaml.5

build/man/sluice.8: docs/sluice.8.md packaging/man/tables-to-lists.lua
	@mkdir -p $(dir $@)
	pandoc -f markdown -s -t man $(MAN_META) -o $@ $<

build/man/sluice.yaml.5: packaging/man/sluice.yaml.5.head.md docs/configuration.md packaging/man/tables-to-lists.lua
	@mkdir -p $(dir $@)
	(cat packaging/man/sluice.yaml.5.head.md; sed '1{/^# /d}' docs/configuration.md) | \
		pandoc -f markdown -s -t man --shift-heading-level-by=-1 $(MAN_META) -o $@
