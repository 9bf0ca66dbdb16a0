package batches

import (
	"fmt"
	"testing"
)

// P9: a wave spans every bot, each bot's locations keep their order, and
// skipped items stay last.
func TestInterleaveBots(t *testing.T) {
	var in []cand
	for _, b := range []string{"a", "b", "c"} {
		for i := range 3 {
			in = append(in, cand{bot: b, uri: fmt.Sprintf("file:///%s/%d", b, i)})
		}
	}
	in = append(in, cand{bot: "z", uri: "file:///z/0", skip: "bot z is inactive"})
	var got []string
	for _, c := range interleaveBots(in) {
		got = append(got, c.uri)
	}
	want := []string{"file:///a/0", "file:///b/0", "file:///c/0", "file:///a/1", "file:///b/1", "file:///c/1",
		"file:///a/2", "file:///b/2", "file:///c/2", "file:///z/0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}
