package raftstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/raft"
)

// The linearizability tests run concurrent clients against a cluster while
// faults are injected, record every operation's call and return times, and
// check the history with porcupine against a sequential model of one key:
//
//	put(k, v)          -> rev                  always applies
//	cas(k, expect, v)  -> ok rev | conflict    applies iff mod revision == expect
//	get(k)             -> (value, mod rev)     ("", 0) when absent
//
// Revisions are Raft log indexes, which the model cannot predict, so it does
// not compute them: it checks that what clients saw is consistent. A put or a
// successful cas must produce a revision greater than the key's current one
// (writes apply in log order), a get must return exactly the current value
// and revision, a cas succeeds exactly when the current revision is the
// expected one, and a conflict reports the current version.
//
// A write that ended with ErrUnknownOutcome (or a context error) may or may
// not have been applied, possibly long after the client gave up: it is kept
// with an infinite return time and the model lets it either apply or not.
// Its revision is then unknown until a read reveals it, so the model's state
// may hold only a lower bound for the revision. Writes that failed without
// effect (ErrNoLeader, ErrStopped) and failed reads are dropped.

const (
	linPrefix      = "/lin/"
	linClients     = 8
	linKeys        = 4
	linOpTimeout   = 2 * time.Second
	linWorkload    = 6 * time.Second
	linCheckLimit  = 60 * time.Second
	linClientDrain = 20 * time.Second
)

type linKind uint8

const (
	linGet linKind = iota
	linPut
	linCAS
)

// linInput is one operation on one key. Expected is the mod revision a cas
// requires.
type linInput struct {
	Kind     linKind
	Key      string
	Value    string
	Expected int64
}

// linOutput is what the operation returned. Unknown marks a write whose
// outcome is unknown. For a put or a successful cas, Rev is the revision of
// the write; for a get or a cas conflict, Value and Rev are the key's current
// value and mod revision ("" and 0 when the key does not exist).
type linOutput struct {
	Unknown bool
	OK      bool
	Value   string
	Rev     int64
}

// linState is the model's state of one key. When Exact is false, Rev is a
// strict lower bound of the real mod revision: the key was last written by
// an operation of unknown outcome, whose revision no one has seen yet.
type linState struct {
	Value string
	Rev   int64
	Exact bool
}

// linStep returns every state the key can be in after the operation, none if
// the operation cannot have returned out from state s.
func linStep(s linState, in linInput, out linOutput) []linState {
	// revIs reports whether the key's revision can be rev.
	revIs := func(rev int64) bool {
		if s.Exact {
			return s.Rev == rev
		}
		return rev > s.Rev
	}
	switch in.Kind {
	case linGet:
		if out.Value != s.Value || !revIs(out.Rev) {
			return nil
		}
		return []linState{{Value: s.Value, Rev: out.Rev, Exact: true}}
	case linPut:
		if out.Unknown {
			return []linState{s, {Value: in.Value, Rev: s.Rev}}
		}
		if out.Rev <= s.Rev {
			return nil
		}
		return []linState{{Value: in.Value, Rev: out.Rev, Exact: true}}
	case linCAS:
		switch {
		case out.Unknown:
			next := []linState{s}
			if revIs(in.Expected) {
				next = append(next, linState{Value: in.Value, Rev: in.Expected})
			}
			return next
		case out.OK:
			if !revIs(in.Expected) || out.Rev <= in.Expected {
				return nil
			}
			return []linState{{Value: in.Value, Rev: out.Rev, Exact: true}}
		default: // conflict: out is the current version, which is not the expected one
			if out.Rev == in.Expected || out.Value != s.Value || !revIs(out.Rev) {
				return nil
			}
			return []linState{{Value: s.Value, Rev: out.Rev, Exact: true}}
		}
	}
	panic(fmt.Sprintf("linearizability model: unknown operation kind %d", in.Kind))
}

// linModel is the per-key model, partitioned by key.
var linModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{linState{Exact: true}} },
	Step: func(state, input, output any) []any {
		next := linStep(state.(linState), input.(linInput), output.(linOutput))
		out := make([]any, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Hash: func(state any) uint64 {
		s := state.(linState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%d\x00%t", s.Value, s.Rev, s.Exact)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		var res string
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Kind == linGet:
			res = fmt.Sprintf("%q@%d", out.Value, out.Rev)
		case out.OK:
			res = fmt.Sprintf("ok@%d", out.Rev)
		default:
			res = fmt.Sprintf("conflict %q@%d", out.Value, out.Rev)
		}
		switch in.Kind {
		case linGet:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case linPut:
			return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
		}
		return fmt.Sprintf("cas(%s, @%d, %q) -> %s", in.Key, in.Expected, in.Value, res)
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		if s.Exact {
			return fmt.Sprintf("%q@%d", s.Value, s.Rev)
		}
		return fmt.Sprintf("%q@>%d", s.Value, s.Rev)
	},
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}).ToModel()

// linCheck checks history; on anything but Ok it writes porcupine's
// visualization to a directory that outlives the test and returns its path.
func linCheck(history []porcupine.Operation) (porcupine.CheckResult, string, error) {
	res, info := porcupine.CheckOperationsVerbose(linModel, history, linCheckLimit)
	if res == porcupine.Ok {
		return res, "", nil
	}
	dir, err := os.MkdirTemp("", "raftstore-linearizability-")
	if err != nil {
		return res, "", err
	}
	path := filepath.Join(dir, "history.html")
	return res, path, porcupine.VisualizePath(linModel, info, path)
}

// TestLinearizability runs random puts, compare-and-swaps and linearizable
// gets from concurrent clients against every node of a cluster under faults,
// and checks the history is linearizable. The "model" subtests check the
// checker: it must reject hand-made histories that are not linearizable.
func TestLinearizability(t *testing.T) {
	t.Run("model", testLinearizabilityModel)

	scenarios := []struct {
		name   string
		nodes  int
		faults func(f *linFaults)
	}{
		{"leader_restarts", 3, (*linFaults).leaderRestarts},
		{"partitions", 5, (*linFaults).partitions},
		{"mixed", 5, (*linFaults).mixed},
	}
	for _, sc := range scenarios {
		for _, seed := range []uint64{1, 2} {
			t.Run(fmt.Sprintf("%s/seed%d", sc.name, seed), func(t *testing.T) {
				runLinearizability(t, sc.nodes, seed, sc.faults)
			})
		}
	}
}

func testLinearizabilityModel(t *testing.T) {
	const inf = math.MaxInt64
	type io struct {
		in  linInput
		out linOutput
	}
	get := func(v string, rev int64) io {
		return io{linInput{Kind: linGet, Key: "k"}, linOutput{OK: true, Value: v, Rev: rev}}
	}
	put := func(v string, rev int64) io {
		return io{linInput{Kind: linPut, Key: "k", Value: v}, linOutput{OK: true, Rev: rev}}
	}
	putUnknown := func(v string) io {
		return io{linInput{Kind: linPut, Key: "k", Value: v}, linOutput{Unknown: true}}
	}
	cas := func(expect int64, v string, rev int64) io {
		return io{linInput{Kind: linCAS, Key: "k", Value: v, Expected: expect}, linOutput{OK: true, Rev: rev}}
	}
	casConflict := func(expect int64, v string, cur string, rev int64) io {
		return io{linInput{Kind: linCAS, Key: "k", Value: v, Expected: expect}, linOutput{Value: cur, Rev: rev}}
	}
	casUnknown := func(expect int64, v string) io {
		return io{linInput{Kind: linCAS, Key: "k", Value: v, Expected: expect}, linOutput{Unknown: true}}
	}
	s := func(client int, call, ret int64, x io) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: x.in, Call: call, Output: x.out, Return: ret}
	}
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"sequential put then get", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 30, get("a", 5)),
		}, porcupine.Ok},
		{"stale read after an acknowledged write", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(0, 20, 30, put("b", 7)),
			s(1, 40, 50, get("a", 5)),
		}, porcupine.Illegal},
		{"concurrent read may see either value", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(0, 20, 60, put("b", 7)),
			s(1, 30, 40, get("a", 5)),
			s(2, 45, 50, get("b", 7)),
		}, porcupine.Ok},
		{"read goes back in time", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(0, 20, 60, put("b", 7)),
			s(1, 30, 40, get("b", 7)),
			s(2, 45, 50, get("a", 5)),
		}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 30, get("z", 5)),
		}, porcupine.Illegal},
		{"revision does not increase", []porcupine.Operation{
			s(0, 0, 10, put("a", 7)),
			s(0, 20, 30, put("b", 6)),
		}, porcupine.Illegal},
		{"two compare-and-swaps from the same revision both succeed", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 40, cas(5, "b", 8)),
			s(2, 21, 41, cas(5, "c", 9)),
		}, porcupine.Illegal},
		{"one of two racing compare-and-swaps conflicts", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 40, cas(5, "b", 8)),
			s(2, 21, 41, casConflict(5, "c", "b", 8)),
		}, porcupine.Ok},
		{"conflict reports a version that is not current", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 30, casConflict(4, "c", "a", 4)),
		}, porcupine.Illegal},
		{"conflict on the expected revision", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, 30, casConflict(5, "c", "a", 5)),
		}, porcupine.Illegal},
		{"write of unknown outcome not applied", []porcupine.Operation{
			s(0, 0, inf, putUnknown("a")),
			s(1, 20, 30, get("", 0)),
		}, porcupine.Ok},
		{"write of unknown outcome applied late", []porcupine.Operation{
			s(0, 0, inf, putUnknown("a")),
			s(1, 20, 30, get("", 0)),
			s(1, 40, 50, get("a", 9)),
		}, porcupine.Ok},
		{"write of unknown outcome undone", []porcupine.Operation{
			s(0, 0, inf, putUnknown("a")),
			s(1, 20, 30, get("a", 9)),
			s(1, 40, 50, get("", 0)),
		}, porcupine.Illegal},
		{"unknown write seen with a revision below its predecessor's", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, inf, putUnknown("b")),
			s(2, 30, 40, get("b", 4)),
		}, porcupine.Illegal},
		{"unknown compare-and-swap applies only on a match", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, inf, casUnknown(4, "b")),
			s(2, 30, 40, get("b", 8)),
		}, porcupine.Illegal},
		{"unknown compare-and-swap applied", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, inf, casUnknown(5, "b")),
			s(2, 30, 40, get("b", 8)),
			s(2, 50, 60, cas(8, "c", 9)),
		}, porcupine.Ok},
		{"compare-and-swap expecting a superseded revision", []porcupine.Operation{
			s(0, 0, 10, put("a", 5)),
			s(1, 20, inf, putUnknown("b")),
			s(2, 30, 40, cas(4, "c", 9)),
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, path, err := linCheck(tt.history)
			if err != nil {
				t.Fatalf("visualize: %v", err)
			}
			if got != tt.want {
				t.Fatalf("check = %s, want %s (history: %s)", got, tt.want, path)
			}
			if path != "" {
				os.RemoveAll(filepath.Dir(path)) // an expected rejection needs no inspection
			}
		})
	}
}

// runLinearizability runs the workload on a new cluster of n nodes while
// faults injects faults, then heals, reads every key from every node, checks
// the replicas agree and checks the history.
func runLinearizability(t *testing.T, n int, seed uint64, faults func(*linFaults)) {
	c := newCluster(t, n, nil)
	c.leader()

	w := &linRun{c: c, start: time.Now(), stop: make(chan struct{}), seed: seed}
	for i := range linKeys {
		w.keys = append(w.keys, fmt.Sprintf("%sk%d", linPrefix, i))
	}
	var wg sync.WaitGroup
	for i := range linClients {
		wg.Go(func() { w.client(i) })
	}
	stopClients := sync.OnceFunc(func() {
		close(w.stop)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(linClientDrain):
			t.Errorf("clients did not finish within %v of being stopped", linClientDrain)
		}
	})
	defer stopClients() // also when a fault step fails the test

	f := &linFaults{t: t, c: c, rng: rand.New(rand.NewPCG(seed, 0xfa17)), start: w.start, until: w.start.Add(linWorkload), down: map[string]bool{}}
	faults(f)
	f.recover()
	stopClients()

	c.leader()
	w.finalReads()
	c.agree(linPrefix, c.readRev(c.leader()))

	history := w.history()
	t.Logf("%d faults; %s", f.count, w.stats())
	checkUniqueRevisions(t, history)
	started := time.Now()
	res, path, err := linCheck(history)
	t.Logf("porcupine: %d operations checked (unknown-outcome writes never read are left out): %s in %v",
		len(history), res, time.Since(started).Round(time.Millisecond))
	if err != nil {
		t.Errorf("visualize: %v", err)
	}
	if res != porcupine.Ok {
		for _, part := range linModel.Partition(history) {
			if r := porcupine.CheckOperationsTimeout(linModel, part, linCheckLimit); r != porcupine.Ok {
				t.Errorf("key %s: %d operations: %s", part[0].Input.(linInput).Key, len(part), r)
			}
		}
		t.Fatalf("history of %d operations: porcupine says %s, want %s; visualization: %s", len(history), res, porcupine.Ok, path)
	}
}

// checkUniqueRevisions checks that no two acknowledged writes, on any keys,
// got the same revision: each is its own log entry.
func checkUniqueRevisions(t *testing.T, history []porcupine.Operation) {
	t.Helper()
	seen := map[int64]linInput{}
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if in.Kind == linGet || out.Unknown || !out.OK {
			continue
		}
		if prev, dup := seen[out.Rev]; dup {
			t.Errorf("writes %+v and %+v both got revision %d", prev, in, out.Rev)
		}
		seen[out.Rev] = in
	}
}

// linRun is one workload: clients, their shared history, and counters.
type linRun struct {
	c     *cluster
	start time.Time
	stop  chan struct{}
	seed  uint64
	keys  []string

	nextClient atomic.Int64

	mu      sync.Mutex
	ops     []porcupine.Operation
	dropped int
	errs    map[string]int // error class -> count, for the log
}

// now is the monotonic time since the run started, porcupine's clock.
func (w *linRun) now() int64 { return time.Since(w.start).Nanoseconds() }

// running returns the stores of the running nodes. Unlike cluster.node it is
// safe to call from any goroutine.
func (w *linRun) running() []*Store {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	out := make([]*Store, 0, len(w.c.nodes))
	for _, nd := range w.c.nodes {
		out = append(out, nd.store)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID() < out[j].NodeID() })
	return out
}

// client issues random operations on random nodes until stop is closed. It
// remembers the last revision it saw of each key to compare-and-swap with.
func (w *linRun) client(i int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(i)))
	id := int(w.nextClient.Add(1) - 1)
	seen := map[string]int64{}
	key := w.keys[0]
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		stores := w.running()
		if len(stores) == 0 {
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s := stores[rng.IntN(len(stores))]
		if rng.IntN(2) == 0 { // else stay on the previous key, to cas with a fresh revision
			key = w.keys[rng.IntN(len(w.keys))]
		}
		in := linInput{Kind: linGet, Key: key}
		value := fmt.Sprintf("c%d-%d", i, seq) // unique, so a read tells which write it sees
		rev, known := seen[key]
		switch p := rng.IntN(100); {
		case !known || p < 35:
		case rev == 0 || p < 65:
			in.Kind, in.Value = linPut, value
		default:
			in.Kind, in.Value, in.Expected = linCAS, value, rev
		}
		out, ok := w.do(id, s, in)
		switch {
		case !ok:
		case out.Unknown:
			// Like a crashed process: the operation stays pending forever,
			// so the client continues under a new identity.
			id = int(w.nextClient.Add(1) - 1)
			delete(seen, key)
		default: // the revision written, read, or reported by a conflict
			seen[key] = out.Rev
		}
	}
}

// do performs one operation on s and records it; ok is false when the
// operation was dropped from the history.
func (w *linRun) do(client int, s *Store, in linInput) (out linOutput, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	call := w.now()
	var err error
	switch in.Kind {
	case linGet:
		var kv *KeyValue
		kv, _, err = s.Get(ctx, in.Key, ReadOptions{})
		out = linOutput{OK: true}
		if kv != nil {
			out.Value, out.Rev = string(kv.Value), kv.ModRevision
		}
	case linPut:
		out.Rev, _, err = s.Put(ctx, in.Key, []byte(in.Value))
		out.OK = true
	case linCAS:
		var kv KeyValue
		kv, err = s.Update(ctx, in.Key, []byte(in.Value), in.Expected)
		var ce *ConflictError
		switch {
		case err == nil:
			out = linOutput{OK: true, Rev: kv.ModRevision}
		case errors.As(err, &ce):
			out, err = linOutput{Value: string(ce.Current.Value), Rev: ce.Current.ModRevision}, nil
		case errors.Is(err, ErrKeyNotFound):
			out, err = linOutput{}, nil
		}
	}
	ret := w.now()
	meta := s.NodeID()

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		class := linErrClass(err)
		if w.errs == nil {
			w.errs = map[string]int{}
		}
		w.errs[fmt.Sprintf("%v %s", kindName(in.Kind), class)]++
		switch {
		case in.Kind == linGet || class == linNoLeader || class == linStopped:
			// Failed reads say nothing; these writes were not applied.
			w.dropped++
			return linOutput{}, false
		case class != linUnknownOutcome:
			// Kept as of unknown outcome, but a caller could not tell.
			w.c.t.Errorf("%s on %s: got error %v, want a conflict, ErrNoLeader, ErrStopped or ErrUnknownOutcome", kindName(in.Kind), s.NodeID(), err)
		}
		out, ret = linOutput{Unknown: true}, math.MaxInt64
		meta += ": " + err.Error()
	}
	w.ops = append(w.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
	return out, true
}

// finalReads records a linearizable read of every key on every node. Called
// after the faults are healed, when every read must succeed.
func (w *linRun) finalReads() {
	t := w.c.t
	t.Helper()
	for _, id := range w.c.ids() {
		client := int(w.nextClient.Add(1) - 1)
		s := w.c.node(id)
		for _, key := range w.keys {
			in := linInput{Kind: linGet, Key: key}
			if out, ok := w.do(client, s, in); !ok || out.Unknown {
				t.Fatalf("%s: final Get(%s) failed after the cluster healed; %s", id, key, w.stats())
			}
		}
	}
}

// history returns the recorded operations without the writes of unknown
// outcome whose value nobody ever read. Dropping them is sound: had such a
// write applied, it was overwritten unseen, and no later operation can
// depend on it (a cas can only expect a revision someone saw), so a history
// is linearizable with it exactly when it is without it. It spares the
// checker operations that stay pending to the end.
func (w *linRun) history() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	type kv struct{ key, value string }
	observed := map[kv]bool{}
	for _, op := range w.ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if !out.Unknown && (in.Kind == linGet || !out.OK) {
			observed[kv{in.Key, out.Value}] = true
		}
	}
	var out []porcupine.Operation
	for _, op := range w.ops {
		in := op.Input.(linInput)
		if op.Output.(linOutput).Unknown && !observed[kv{in.Key, in.Value}] {
			continue
		}
		out = append(out, op)
	}
	return out
}

// stats summarises the recorded operations for the log.
func (w *linRun) stats() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n [3]int
	var unknown, conflicts int
	for _, op := range w.ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		n[in.Kind]++
		switch {
		case out.Unknown:
			unknown++
		case in.Kind == linCAS && !out.OK:
			conflicts++
		}
	}
	var errs []string
	for class, k := range w.errs {
		errs = append(errs, fmt.Sprintf("%s: %d", class, k))
	}
	sort.Strings(errs)
	return fmt.Sprintf("%d ops (%d get, %d put, %d cas of which %d conflicted), %d of unknown outcome, %d dropped; errors {%s}",
		len(w.ops), n[linGet], n[linPut], n[linCAS], conflicts, unknown, w.dropped, strings.Join(errs, ", "))
}

func kindName(k linKind) string {
	return [...]string{"get", "put", "cas"}[k]
}

// Classes of errors, as linErrClass names them.
const (
	linNoLeader       = "no leader"
	linStopped        = "stopped"
	linUnknownOutcome = "unknown outcome"
)

// linErrClass names the kind of a failed operation's error.
func linErrClass(err error) string {
	switch {
	case errors.Is(err, ErrNoLeader):
		return linNoLeader
	case errors.Is(err, ErrStopped):
		return linStopped
	case errors.Is(err, ErrUnknownOutcome):
		return linUnknownOutcome
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "other: " + err.Error()
}

// linFaults injects faults into a cluster from the test goroutine until the
// workload's end. Every fault it starts it also ends, by the time recover
// returns.
type linFaults struct {
	t     *testing.T
	c     *cluster
	rng   *rand.Rand
	start time.Time
	until time.Time
	down  map[string]bool
	count int
}

func (f *linFaults) more() bool { return time.Now().Before(f.until) }

// pause lets the workload run for a random time in [lo, hi), cut short at the
// end of the workload.
func (f *linFaults) pause(lo, hi time.Duration) {
	d := lo + time.Duration(f.rng.Int64N(int64(hi-lo)))
	if left := time.Until(f.until); d > left {
		d = max(left, 0)
	}
	time.Sleep(d)
}

func (f *linFaults) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("%6.2fs: "+format, append([]any{time.Since(f.start).Seconds()}, args...)...)
}

// leader returns the node that leads with the highest term among the running
// ones, waiting for one to exist.
func (f *linFaults) leader() string {
	f.t.Helper()
	var leader string
	waitFor(f.t, 15*time.Second, "a leader", func() error {
		var term uint64
		leader = ""
		for _, id := range f.c.ids() {
			r := f.c.node(id).raft
			if r.State() == raft.Leader && r.CurrentTerm() >= term {
				leader, term = id, r.CurrentTerm()
			}
		}
		if leader == "" {
			return errors.New("no running node is the leader")
		}
		return nil
	})
	return leader
}

// follower returns a random running node other than leader.
func (f *linFaults) follower(leader string) string {
	var followers []string
	for _, id := range f.c.ids() {
		if id != leader {
			followers = append(followers, id)
		}
	}
	return followers[f.rng.IntN(len(followers))]
}

func (f *linFaults) kill(id string) {
	f.t.Helper()
	f.logf("stop %s", id)
	f.count++
	f.down[id] = true
	f.c.stop(id)
}

func (f *linFaults) restart(id string) {
	f.t.Helper()
	f.logf("restart %s", id)
	delete(f.down, id)
	f.c.restart(id)
}

func (f *linFaults) heal() {
	f.logf("heal")
	f.c.net.Heal()
}

// recover heals the network and restarts every stopped node.
func (f *linFaults) recover() {
	f.t.Helper()
	f.logf("end of faults: heal, restart %v", sortedKeys(f.down))
	f.c.net.Heal()
	for _, id := range sortedKeys(f.down) {
		f.restart(id)
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// leaderRestarts repeatedly stops the leader and restarts it from its data
// directory.
func (f *linFaults) leaderRestarts() {
	for f.pause(300*time.Millisecond, 700*time.Millisecond); f.more(); f.pause(300*time.Millisecond, 700*time.Millisecond) {
		id := f.leader()
		f.kill(id)
		f.pause(200*time.Millisecond, 800*time.Millisecond)
		f.restart(id)
	}
}

// partitions splits the network in changing ways and heals it in between.
func (f *linFaults) partitions() {
	for f.pause(200*time.Millisecond, 500*time.Millisecond); f.more(); f.pause(200*time.Millisecond, 600*time.Millisecond) {
		f.partitionOnce()
		f.hold()
		f.heal()
	}
}

// hold keeps a fault in place, sometimes for longer than an operation's
// timeout so that writes also fail for lack of a leader.
func (f *linFaults) hold() {
	if f.rng.IntN(3) == 0 {
		f.pause(linOpTimeout, linOpTimeout+time.Second)
		return
	}
	f.pause(400*time.Millisecond, 1200*time.Millisecond)
}

// partitionOnce applies one random partition.
func (f *linFaults) partitionOnce() {
	f.t.Helper()
	f.count++
	ids := f.c.ids()
	f.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	switch f.rng.IntN(4) {
	case 0: // majority and minority
		k := len(ids)/2 + 1
		f.logf("partition %v | %v", ids[:k], ids[k:])
		f.c.net.Partition(ids[:k], ids[k:])
	case 1:
		id := f.leader()
		f.logf("isolate leader %s", id)
		f.c.net.Isolate(id)
	case 2: // the leader on the minority side, with followers if it has room
		leader := f.leader()
		minority, majority := []string{leader}, []string(nil)
		for _, id := range ids {
			switch {
			case id == leader:
			case len(minority) < (len(ids)-1)/2:
				minority = append(minority, id)
			default:
				majority = append(majority, id)
			}
		}
		f.logf("partition leader's side %v | %v", minority, majority)
		f.c.net.Partition(minority, majority)
	default: // links cut at random: no clean sides
		var cuts []string
		for range len(ids) - 1 {
			a, b := f.rng.IntN(len(ids)), f.rng.IntN(len(ids))
			if a < b {
				f.c.net.Cut([]string{ids[a]}, []string{ids[b]})
				cuts = append(cuts, ids[a]+"-"+ids[b])
			}
		}
		f.logf("cut links %v", cuts)
	}
}

// mixed stops leaders and followers and partitions the network, one fault at
// a time, recovering from each before the next.
func (f *linFaults) mixed() {
	for f.pause(200*time.Millisecond, 500*time.Millisecond); f.more(); f.pause(200*time.Millisecond, 600*time.Millisecond) {
		switch f.rng.IntN(4) {
		case 0:
			id := f.leader()
			f.kill(id)
			f.pause(200*time.Millisecond, 800*time.Millisecond)
			f.restart(id)
		case 1: // a follower restarts
			id := f.follower(f.leader())
			f.kill(id)
			f.pause(100*time.Millisecond, 600*time.Millisecond)
			f.restart(id)
		case 2:
			f.partitionOnce()
			f.hold()
			f.heal()
		default: // a follower down while the leader is cut off
			leader := f.leader()
			follower := f.follower(leader)
			f.kill(follower)
			f.logf("isolate leader %s", leader)
			f.count++
			f.c.net.Isolate(leader)
			f.hold()
			f.heal()
			f.restart(follower)
		}
	}
}
