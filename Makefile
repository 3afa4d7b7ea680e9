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

# Make Outpost available to Postfix's master(8): master.cf commands are relative to
# daemon_directory, so the program goes to $(POSTFIX_DAEMON_DIR)/outpost/{smtp,lmtp}
# (the process name, smtp or lmtp, selects the protocol). See the README for master.cf.
install-postfix: build
	install -d $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost
	install -m 0755 $(BIN) $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost/smtp
	ln -f $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost/smtp $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost/lmtp

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/outpost $(DESTDIR)$(MANDIR)/man1/outpost.1
	rm -f $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost/smtp $(DESTDIR)$(POSTFIX_DAEMON_DIR)/outpost/lmtp

clean:
	$(CARGO) clean
