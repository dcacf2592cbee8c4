package apiserver

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCheckJSONDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		name    string
		body    string
		wantErr bool
	}{
		{"flat", `{"a":1}`, false},
		{"at the limit", nest(MaxJSONDepth), false},
		{"one past the limit", nest(MaxJSONDepth + 1), true},
		{"objects past the limit", strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1), true},
		{"brackets in strings do not count", `{"a":"` + strings.Repeat("[{", 5000) + `"}`, false},
		{"escaped quote keeps the string open", `{"a":"\"` + strings.Repeat("[", 5000) + `"}`, false},
		{"escaped backslash closes the string", `{"a":"\\"` + `,"b":` + nest(MaxJSONDepth+1) + `}`, true},
	} {
		err := checkJSONDepth([]byte(c.body), MaxJSONDepth)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: got error %v, want error %v", c.name, err, c.wantErr)
		}
	}
}

// TestBodyGuards sends hostile bodies and checks each is refused with 400,
// quickly and without allocating in proportion to what it would expand to,
// while a large ordinary object is still accepted.
func TestBodyGuards(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n"
	// Nine levels of nine aliases: 387,420,489 strings once expanded.
	laughs := cm + "  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	for i, c := range "bcdefghi" {
		prev := string("abcdefgh"[i])
		laughs += "  " + string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
	}
	// Few aliases with a wide fan-out: 10,000,000 strings once expanded.
	wide := cm + "  a: &a [" + strings.Repeat(`"lol",`, 999) + "\"lol\"]\n" +
		"  b: &b [" + strings.Repeat("*a,", 999) + "*a]\n" +
		"  c: [" + strings.Repeat("*b,", 9) + "*b]\n"
	deepArrays := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	deepObjects := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":` + strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000) + `}`
	deepYAML := cm + "  a: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n"

	for _, c := range []struct {
		name, contentType, body, wantMsg string
	}{
		{"billion laughs", mediaYAML, laughs, "excessive aliasing"},
		{"wide alias fan-out", mediaYAML, wide, "excessive aliasing"},
		{"10,000 nested arrays", mediaJSON, deepArrays, "nested more than 1000 levels"},
		{"10,000 nested objects", mediaJSON, deepObjects, "nested more than 1000 levels"},
		{"10,000 nested arrays without a type", "", deepArrays, "nested more than 1000 levels"},
		{"20,000 nested YAML flow sequences", mediaYAML, deepYAML, "depth"},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		code, _, body := do(t, "POST", cms, c.contentType, c.body)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if code != 400 {
			t.Errorf("%s: got %d %s, want 400", c.name, code, body)
		}
		if !strings.Contains(string(body), c.wantMsg) {
			t.Errorf("%s: got body %s, want it to contain %q", c.name, body, c.wantMsg)
		}
		if took > 2*time.Second {
			t.Errorf("%s: took %v, want under 2s", c.name, took)
		}
		// Client, server and store share this process: the bound is loose,
		// but an expanded bomb would need gigabytes.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
			t.Errorf("%s: allocated %d MiB, want under 256 MiB", c.name, alloc>>20)
		}
	}

	// An ordinary 2 MiB body is still fine (a ConfigMap of 1 MB, the most
	// a ConfigMap may hold, and whitespace), and so is a patch of it.
	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"` + strings.Repeat("x", 1_000_000) + `"}` + strings.Repeat(" ", 1<<20) + `}`
	if code, _, body := do(t, "POST", cms, mediaJSON, big); code != 201 {
		t.Fatalf("2 MiB body: got %d %.300s, want 201", code, body)
	}
	if code, _, body := do(t, "PATCH", cms+"/big", "application/merge-patch+json", `{"data":{"j":"y"}}`); code != 200 {
		t.Errorf("merge patch: got %d %.300s, want 200", code, body)
	}
	deepPatch := `{"data":` + strings.Repeat(`{"a":`, 2000) + "1" + strings.Repeat("}", 2000) + `}`
	if code, _, body := do(t, "PATCH", cms+"/big", "application/merge-patch+json", deepPatch); code != 400 || !strings.Contains(string(body), "nested more than") {
		t.Errorf("deep merge patch: got %d %.300s, want 400 nested more than", code, body)
	}
}

// TestUnknownFieldsWarnByDefault: without ?fieldValidation (and with Warn)
// unknown fields are accepted with a Warning header, as kube-apiserver
// does; Ignore says nothing; Strict refuses them.
func TestUnknownFieldsWarnByDefault(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	for i, q := range []string{"", "?fieldValidation=Warn", "?fieldValidation=Ignore", "?fieldValidation=Strict"} {
		code, header, body := do(t, "POST", cms+q, mediaJSON, fmt.Sprintf(`{"metadata":{"name":"w%d"},"bogusField":1}`, i))
		warning := header.Get("Warning")
		switch q {
		case "", "?fieldValidation=Warn":
			if code != 201 || warning != `299 - "unknown field \"bogusField\""` {
				t.Errorf("%q: got %d, Warning %q, want 201 with the unknown-field warning", q, code, warning)
			}
		case "?fieldValidation=Ignore":
			if code != 201 || warning != "" {
				t.Errorf("%q: got %d, Warning %q, want 201 without warning", q, code, warning)
			}
		default:
			if code != 400 || !strings.Contains(string(body), `strict decoding error: unknown field \"bogusField\"`) {
				t.Errorf("%q: got %d %s, want 400 strict decoding error", q, code, body)
			}
		}
	}
}
