package scan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// fakeSource emits the findings it holds, then returns err.
type fakeSource struct {
	findings []protocol.Finding
	err      error
}

func (f fakeSource) Discover(ctx context.Context, _ protocol.Target, emit connectors.Emit) error {
	for _, x := range f.findings {
		if err := emit(x); err != nil {
			return err
		}
	}
	return f.err
}

type sliceSink struct {
	got  []protocol.Finding
	fail error
}

func (s *sliceSink) Write(f protocol.Finding) error {
	if s.fail != nil {
		return s.fail
	}
	s.got = append(s.got, f)
	return nil
}

func mustTarget(t *testing.T, s string) protocol.Target {
	t.Helper()
	tg, err := protocol.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestRunner(t *testing.T) {
	cert := protocol.Finding{Location: protocol.Location{Scheme: "tls", Host: "a:443"}, Chain: [][]byte{{1}}}
	bad := protocol.Finding{Location: protocol.Location{Scheme: "tls", Host: "b:443"}, Error: "tls handshake: timed out"}
	tests := []struct {
		name       string
		registry   Registry
		targets    []string
		wantLines  int
		wantCerts  int
		wantErrors int
		wantErrIn  string // a whole-target error turned into a line
	}{
		{"findings pass through", Registry{"tls": fakeSource{findings: []protocol.Finding{cert, bad}}}, []string{"tls://a"}, 2, 1, 1, ""},
		{"a failed target becomes a line and the scan goes on",
			Registry{"tls": fakeSource{findings: []protocol.Finding{cert}}, "certstore": fakeSource{err: errors.New("certstore: not supported on this platform")}},
			[]string{"certstore://", "tls://a"}, 2, 1, 1, "not supported on this platform"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var targets []protocol.Target
			for _, s := range tc.targets {
				targets = append(targets, mustTarget(t, s))
			}
			sink := &sliceSink{}
			sum, err := Runner{Registry: tc.registry, Now: func() time.Time { return time.Unix(0, 0) }}.Run(context.Background(), targets, sink)
			if err != nil {
				t.Fatal(err)
			}
			if len(sink.got) != tc.wantLines || sum.Certificates != tc.wantCerts || sum.Errors != tc.wantErrors || sum.Targets != len(targets) {
				t.Errorf("lines %d certs %d errors %d targets %d", len(sink.got), sum.Certificates, sum.Errors, sum.Targets)
			}
			if tc.wantErrIn != "" && !strings.Contains(sink.got[0].Error, tc.wantErrIn) {
				t.Errorf("first line %+v does not carry the target's error", sink.got[0])
			}
			if sum.Stopped != nil {
				t.Errorf("stopped: %v", sum.Stopped)
			}
		})
	}
}

func TestRunnerSinkFailureStops(t *testing.T) {
	reg := Registry{"tls": fakeSource{findings: []protocol.Finding{{Chain: [][]byte{{1}}}}}}
	_, err := Runner{Registry: reg}.Run(context.Background(), []protocol.Target{mustTarget(t, "tls://a")}, &sliceSink{fail: errors.New("disk full")})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("got %v", err)
	}
}

func TestRunnerStoppedByContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("max runtime of 1s reached"))
	sum, err := Runner{Registry: Registry{"tls": fakeSource{}}}.Run(ctx, []protocol.Target{mustTarget(t, "tls://a")}, &sliceSink{})
	if err != nil || sum.Stopped == nil || !strings.Contains(sum.Stopped.Error(), "max runtime") {
		t.Errorf("sum %+v err %v", sum, err)
	}
}
