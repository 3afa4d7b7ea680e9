# Outpost: build, demo, test, benchmark, install.
# `make demo` and `make test` are the two commands in the README.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
CARGO   ?= cargo
BIN     := target/release/outpost
POSTFIX_DAEMON_DIR ?= $(shell postconf -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)

.PHONY: all build demo test test-deps lint bench install install-postfix uninstall clean

all: build

build:
	$(CARGO) build --release --locked

demo: build
	sh scripts/demo.sh $(BIN)

# Installs the real peers the tests talk to (Debian packages) when running as root,
# then runs every test: unit, integration against `outpost sink`, and interop.
test: test-deps
	$(CARGO) build --release --locked
	$(CARGO) test --release --locked -- --test-threads=$${TEST_THREADS:-4}

test-deps:
	sh scripts/test-deps.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

bench: build test-deps
	sh scripts/bench.sh $(BIN)

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/outpost
	install -m 0644 man/outpost.1 $(DESTDIR)$(MANDIR)/man1/outpost.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/outpost $(DESTDIR)$(MANDIR)/man1/outpost.1

clean:
	$(CARGO) clean
