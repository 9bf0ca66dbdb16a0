package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/internal/testlog"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A connector bot activated with --listen relays for a bot activated with
// --via it: activation and the service's calls go through, and the relay
// logs each tunnel and stops with the service.
func TestRunRelaysForAnotherBot(t *testing.T) {
	cp := fakecp.New(t)
	const token2 = "1b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c4"
	cp.AddToken(testAccount, testToken)
	cp.AddToken(testAccount, token2)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	dirA := filepath.Join(t.TempDir(), "a")
	if code, _, stderr := runBot(t, "activate", "--state", dirA, "--account", testAccount, "--token", testToken, "--url", cp.URL, "--ca-file", caFile, "--listen", fmt.Sprint(port)); code != exitOK {
		t.Fatalf("activate A: %s", stderr)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	var logA testlog.Buffer
	doneA := make(chan int, 1)
	go func() {
		doneA <- run(ctxA, []string{"run", "--state", dirA}, strings.NewReader(""), &bytes.Buffer{}, &logA)
	}()
	via := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "A's relay", func() bool {
		c, err := net.Dial("tcp", via)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	dirB := filepath.Join(t.TempDir(), "b")
	if code, _, stderr := runBot(t, "activate", "--state", dirB, "--account", testAccount, "--token", token2, "--url", cp.URL, "--ca-file", caFile, "--via", via); code != exitOK {
		t.Fatalf("activate B via A: %s", stderr)
	}
	cp.Do(func(cp *fakecp.Server) {
		if len(cp.Activations) != 2 || cp.Activations[1].Path != "via "+via || cp.Activations[0].Path != "direct" {
			t.Errorf("activations %+v", cp.Activations)
		}
	})
	var gets0 int
	cp.Do(func(cp *fakecp.Server) { gets0 = cp.ConfigGets })
	ctxB, cancelB := context.WithCancel(context.Background())
	var logB testlog.Buffer
	doneB := make(chan int, 1)
	go func() {
		doneB <- run(ctxB, []string{"run", "--state", dirB}, strings.NewReader(""), &bytes.Buffer{}, &logB)
	}()
	waitFor(t, "B's configuration fetch", func() bool {
		var gets int
		cp.Do(func(cp *fakecp.Server) { gets = cp.ConfigGets })
		return gets > gets0
	})
	cancelB()
	if code := <-doneB; code != exitOK {
		t.Errorf("B: exit %d: %s", code, logB.String())
	}
	if !strings.Contains(logB.String(), `path="via `+via+`"`) {
		t.Errorf("B does not log its path: %s", logB.String())
	}
	cancelA()
	if code := <-doneA; code != exitOK {
		t.Errorf("A: exit %d: %s", code, logA.String())
	}
	for _, want := range []string{"relay listening", "relay: tunnel closed", "bytes_up=", "relay stopped"} {
		if !strings.Contains(logA.String(), want) {
			t.Errorf("A's log lacks %q: %s", want, logA.String())
		}
	}
}
