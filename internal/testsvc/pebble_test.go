package testsvc

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestAnswerDNS(t *testing.T) {
	tests := []struct {
		typ     dnsmessage.Type
		answers int
	}{
		{dnsmessage.TypeA, 1},
		{dnsmessage.TypeAAAA, 0},
		{dnsmessage.TypeTXT, 0},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			q := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: 42, RecursionDesired: true},
				Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("a.example."), Type: tt.typ, Class: dnsmessage.ClassINET}},
			}
			b, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			ans, err := answerDNS(b)
			if err != nil {
				t.Fatal(err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(ans); err != nil {
				t.Fatal(err)
			}
			if m.ID != 42 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != tt.answers {
				t.Fatalf("answer %+v", m)
			}
			if tt.answers == 1 {
				a := m.Answers[0].Body.(*dnsmessage.AResource).A
				if !bytes.Equal(a[:], net.IPv4(127, 0, 0, 1).To4()) {
					t.Errorf("A %v", a)
				}
			}
		})
	}
	if _, err := answerDNS([]byte{1, 2}); err == nil {
		t.Error("garbage answered")
	}
}

func TestStartPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("needs pebble (scripts/gotools.sh)")
	}
	p := StartPebble(t, PebbleOptions{EABKeys: map[string]string{"kid-1": "AAECAw"}})
	resp, err := p.HTTPClient.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	root := p.Root(t)
	if !root.IsCA {
		t.Errorf("root %s is not a CA", root.Subject)
	}
	// The directory says EAB is required.
	resp, err = p.HTTPClient.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if !bytes.Contains(buf.Bytes(), []byte(`"externalAccountRequired": true`)) {
		t.Errorf("directory without externalAccountRequired: %s", buf.String())
	}
}
