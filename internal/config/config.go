// Package config loads chive's YAML configuration files strictly: an unknown
// key is an error that names the key and its line, so a typo never silently
// falls back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the YAML file at path into out (a pointer to a struct with yaml
// tags). Unknown keys, type mismatches and multiple documents are errors.
func Load(path string, out any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Decode(bytes.NewReader(b), path, out)
}

// Decode is Load for a reader; name labels errors.
func Decode(r io.Reader, name string, out any) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: the file is empty", name)
		}
		return fmt.Errorf("config %s: %s", name, explain(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: more than one YAML document; put everything in one", name)
	}
	return nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// explain rewrites yaml.v3's messages into ones a person can act on.
func explain(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			msgs = append(msgs, fmt.Sprintf("line %s: unknown key %q (check its spelling and indentation against the sample in configs/)", m[1], m[2]))
			continue
		}
		msgs = append(msgs, e)
	}
	return strings.Join(msgs, "; ")
}

// Error is a validation error naming the offending key.
type Error struct {
	Key string // dotted path, e.g. "exit.policy"
	Msg string // what is wrong and how to fix it
}

func (e *Error) Error() string { return fmt.Sprintf("config key %q: %s", e.Key, e.Msg) }

// Errorf returns an *Error for key.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}
