package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
		ok   bool
	}{
		{nil, Stat{}, false},
		{[]float64{math.NaN()}, Stat{}, false},
		{[]float64{7}, Stat{N: 1, Median: 7, Min: 7, Max: 7}, true},
		{[]float64{3, 1, 2}, Stat{N: 3, Median: 2, Min: 1, Max: 3}, true},
		{[]float64{4, 1, 3, 2}, Stat{N: 4, Median: 2.5, Min: 1, Max: 4}, true},
		{[]float64{5, math.NaN(), -1, 10, 10, 0}, Stat{N: 5, Median: 5, Min: -1, Max: 10}, true},
	} {
		in := append([]float64(nil), tc.in...)
		got, ok := Summarize(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if !reflect.DeepEqual(in, tc.in) && !math.IsNaN(sum(in)) {
			t.Errorf("Summarize reordered its input: %v", tc.in)
		}
	}
}

func sum(xs []float64) (s float64) {
	for _, x := range xs {
		s += x
	}
	return s
}

func TestAggregate(t *testing.T) {
	// Medians 2, 10, 30 -> 10; min and max over every sample.
	c := Aggregate([][]float64{{1, 2, 3}, {9, 10, 11}, nil, {30, 30, 100}}, 2)
	want := Cell{Stat: &Stat{N: 9, Median: 10, Min: 1, Max: 100}, PerNetwork: []float64{2, 10, 30}, Failures: 2}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v %+v, want %+v %+v", c, c.Stat, want, want.Stat)
	}
	if c := Aggregate([][]float64{nil, {}}, 3); c.Stat != nil || c.Failures != 3 {
		t.Errorf("no samples: got %+v", c)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{1234.6, "1235"}, {12.345, "12.3"}, {1.2345, "1.23"}, {0.012345, "0.012"}, {-3.5, "-3.50"}} {
		if got := Num(tc.v); got != tc.want {
			t.Errorf("Num(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		c    Cell
		want string
	}{
		{Cell{}, "—"},
		{Cell{Note: "not installed"}, "not installed"},
		{Cell{Failures: 2}, "—, 2 failed"},
		{Cell{Stat: &Stat{N: 1, Median: 29.4, Min: 29.4, Max: 29.4}}, "29.4"},
		{Cell{Stat: &Stat{N: 5, Median: 12, Min: 11, Max: 14.26}, Failures: 1}, "12.0 (11.0–14.3), 1 failed"},
		{Cell{Stat: &Stat{N: 5, Median: 1, Min: 1, Max: 1}, Failures: 1, Capped: 3}, "1.00 (1.00–1.00), 1 failed, 3 capped"},
	} {
		if got := FormatCell(tc.c); got != tc.want {
			t.Errorf("FormatCell(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func sample() *Report {
	st := func(n int, med, lo, hi float64) *Stat { return &Stat{N: n, Median: med, Min: lo, Max: hi} }
	return &Report{
		Title:    "chive vs C tor",
		Machine:  []KV{{"CPU", "2 x Intel Xeon"}, {"tor", "Tor version 0.4.9.11."}},
		Settings: []KV{{"networks", "3"}, {"repetitions", "5"}},
		Columns:  []string{"C tor", "chive class 0", "chive class 1"},
		Ratios:   []Ratio{{"class 0 / tor", 1, 0}, {"class 1 / tor", 2, 0}, {"class 1 / class 0", 2, 1}},
		Rows: []Row{
			{Key: "bulk1", Metric: "bulk, 1 stream", Unit: "MB/s", Better: Higher, Cells: []Cell{
				{Stat: st(15, 12, 4, 14), PerNetwork: []float64{11, 12, 13}},
				{Stat: st(15, 150, 120, 160)},
				{Stat: st(15, 130, 100, 140), Failures: 1, Capped: 2},
			}},
			{Key: "ttfb-ready", Metric: "TTFB | ready circuit", Unit: "ms", Better: Lower, Cells: []Cell{
				{Stat: st(15, 20, 12, 38)}, {Stat: st(15, 1.5, 1.2, 2)}, {},
			}},
			{Key: "bootstrap", Metric: "bootstrap", Unit: "s", Better: Lower, Cells: []Cell{
				{Stat: st(1, 29.5, 29.5, 29.5)}, {Note: "not run"}, {Note: "same network as class 0"},
			}},
		},
		Notes: []string{"MB/s is 10^6 bytes per second."},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.md", b.Bytes())
}

func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, sample()) {
		t.Errorf("JSON round trip differs:\n%+v\n%+v", back, *sample())
	}
}
