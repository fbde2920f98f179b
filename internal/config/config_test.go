package config

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `yaml:"name"`
	Timeout time.Duration `yaml:"timeout"`
	Nested  struct {
		Port int `yaml:"port"`
	} `yaml:"nested"`
}

func TestDecode(t *testing.T) {
	var s sample
	if err := Decode(strings.NewReader("name: x\ntimeout: 1500ms\nnested:\n  port: 7\n"), "t.yaml", &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "x" || s.Timeout != 1500*time.Millisecond || s.Nested.Port != 7 {
		t.Fatalf("decoded %+v", s)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"name: x\nnested:\n  prot: 7\n", `line 3: unknown key "prot"`},
		{"nmae: x\n", `line 1: unknown key "nmae"`},
		{"timeout: soon\n", "line 1"},
		{"", "empty"},
		{"name: a\n---\nname: b\n", "more than one YAML document"},
		{"nested: [1, 2]\n", "line 1"},
	}
	for _, tc := range cases {
		var s sample
		err := Decode(strings.NewReader(tc.in), "t.yaml", &s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "t.yaml") {
			t.Errorf("Decode(%q) = %v, want an error containing %q and the file name", tc.in, err, tc.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	err := Errorf("exit.policy", "rule %d is malformed; write it like %q", 2, "accept *:443")
	if got := err.Error(); got != `config key "exit.policy": rule 2 is malformed; write it like "accept *:443"` {
		t.Fatalf("got %q", got)
	}
}
