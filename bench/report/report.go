// Package report holds the whole-network benchmark's statistics and writes
// its table as Markdown and JSON.
//
// A workload's samples come from several fresh networks. A cell reports
// the median across networks of each network's median (networks differ
// more than repetitions do: path, exit, conflux or not), and the minimum
// and maximum over every sample of every network.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Stat is a summary of samples.
type Stat struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the median, minimum and maximum of xs (the median of
// an even count is the mean of the middle two). ok is false for no
// samples. NaNs are not samples and are skipped.
func Summarize(xs []float64) (s Stat, ok bool) {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Stat{}, false
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Stat{N: n, Median: med, Min: v[0], Max: v[n-1]}, true
}

// Cell is one metric of one column.
type Cell struct {
	// Stat is nil when nothing was measured.
	Stat *Stat `json:"stat,omitempty"`
	// PerNetwork is each network's median, in the order run.
	PerNetwork []float64 `json:"per_network_median,omitempty"`
	// Failures counts failed attempts (they have no sample).
	Failures int `json:"failures,omitempty"`
	// Capped counts samples of transfers cut short at a time cap (their
	// rate is over the bytes received).
	Capped int `json:"capped,omitempty"`
	// Note replaces the figure when there is none, e.g. "not installed".
	Note string `json:"note,omitempty"`
}

// Aggregate makes a cell from each network's samples: the median of the
// networks' medians, and the minimum and maximum of all samples.
func Aggregate(perNetwork [][]float64, failures int) Cell {
	c := Cell{Failures: failures}
	var all []float64
	for _, xs := range perNetwork {
		s, ok := Summarize(xs)
		if !ok {
			continue
		}
		c.PerNetwork = append(c.PerNetwork, s.Median)
		all = append(all, xs...)
	}
	if len(c.PerNetwork) == 0 {
		return c
	}
	med, _ := Summarize(c.PerNetwork)
	tot, _ := Summarize(all)
	c.Stat = &Stat{N: tot.N, Median: med.Median, Min: tot.Min, Max: tot.Max}
	return c
}

// Better says which way a metric improves.
type Better string

const (
	Higher Better = "higher"
	Lower  Better = "lower"
)

// Row is one metric across the columns.
type Row struct {
	Key    string `json:"key"` // stable identifier, e.g. "bulk1"
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	Better Better `json:"better"`
	Cells  []Cell `json:"cells"` // one per Report.Columns
}

// Ratio is a ratio column: the median of column Num over that of Den.
type Ratio struct {
	Name string `json:"name"`
	Num  int    `json:"num"`
	Den  int    `json:"den"`
}

// KV is a named value for the report's header.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Report is the benchmark's result.
type Report struct {
	Title    string   `json:"title"`
	Machine  []KV     `json:"machine"`
	Settings []KV     `json:"settings"`
	Columns  []string `json:"columns"`
	Ratios   []Ratio  `json:"ratios"`
	Rows     []Row    `json:"rows"`
	Notes    []string `json:"notes,omitempty"`
	// Extra holds raw data (per-network samples, per-process figures) for
	// the JSON output only.
	Extra any `json:"raw,omitempty"`
}

// RatioOf returns row's ratio r and whether both medians exist (and the
// denominator is not zero).
func (rep *Report) RatioOf(row Row, r Ratio) (float64, bool) {
	if r.Num >= len(row.Cells) || r.Den >= len(row.Cells) {
		return 0, false
	}
	n, d := row.Cells[r.Num].Stat, row.Cells[r.Den].Stat
	if n == nil || d == nil || d.Median == 0 {
		return 0, false
	}
	return n.Median / d.Median, true
}

// Num formats a figure with about three significant digits and no
// exponent.
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// FormatCell is "median (min–max)", with the failures if any; the note
// alone when there is no figure.
func FormatCell(c Cell) string {
	var s string
	switch {
	case c.Stat == nil && c.Note != "":
		s = c.Note
	case c.Stat == nil:
		s = "—"
	case c.Stat.N == 1:
		s = Num(c.Stat.Median)
	default:
		s = fmt.Sprintf("%s (%s–%s)", Num(c.Stat.Median), Num(c.Stat.Min), Num(c.Stat.Max))
	}
	if c.Failures > 0 {
		s += fmt.Sprintf(", %d failed", c.Failures)
	}
	if c.Capped > 0 {
		s += fmt.Sprintf(", %d capped", c.Capped)
	}
	return s
}

// WriteMarkdown writes the report as a Markdown document.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", rep.Title)
	kvs := func(title string, kv []KV) {
		if len(kv) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s:\n\n", title)
		for _, e := range kv {
			fmt.Fprintf(&b, "- %s: %s\n", e.Key, mdEscape(e.Value))
		}
		b.WriteString("\n")
	}
	kvs("Machine", rep.Machine)
	kvs("Settings", rep.Settings)

	head := []string{"metric", "unit", "better"}
	head = append(head, rep.Columns...)
	for _, r := range rep.Ratios {
		head = append(head, r.Name)
	}
	row := func(cells []string) {
		for i := range cells {
			cells[i] = mdEscape(cells[i])
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	row(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
		if i >= 3 {
			sep[i] = "--:"
		}
	}
	b.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, r := range rep.Rows {
		cells := []string{r.Metric, r.Unit, string(r.Better)}
		for i := range rep.Columns {
			c := Cell{}
			if i < len(r.Cells) {
				c = r.Cells[i]
			}
			cells = append(cells, FormatCell(c))
		}
		for _, ra := range rep.Ratios {
			if v, ok := rep.RatioOf(r, ra); ok {
				cells = append(cells, Num(v)+"x")
			} else {
				cells = append(cells, "")
			}
		}
		row(cells)
	}
	if len(rep.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdEscape keeps a value from breaking a table row.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
