// Package storebench benchmarks Skiff on loopback against etcd 3.4 (Debian's
// etcd-server, /usr/bin/etcd), three real `skiff server` processes beside a
// three-member etcd cluster, one cluster at a time in one `go test` run:
//
//   - BenchmarkStore: the Raft store against etcd, the same write workload
//     on both, side by side with the ratio skiff/etcd and its targets.
//   - BenchmarkAPI: the Kubernetes API of the three masters through
//     client-go (creates, a large list, many watchers), with raw etcd puts
//     of the same size measured in the same run as the reference, and a
//     PASS/MISS line per target of the API issue.
//
// It is a module of its own so that the etcd client never enters the
// dependency graph of the skiff binary; the main module's `./...` does not
// reach into it. Its k8s.io versions are the main module's. The intended
// invocation is `make bench`, or:
//
//	make build
//	cd e2e/storebench && SKIFF_BIN=$PWD/../../bin/skiff go test -run '^$' -bench . -benchtime 1x -timeout 60m .
//
// (-bench API or -bench Store for one of them.)
//
// # BenchmarkStore
//
// The sequence per system is: start the cluster and wait until it has a
// leader and three voters; write a short warm-up; for each writer count, run
// the timed workload (sub-benchmarks skiff/writers=N and etcd/writers=N,
// metrics writes/s, p50-ms, p99-ms); then load the cluster up to the key
// target with 64 writers, wait until every node has applied every key and
// read each process's VmRSS (sub-benchmarks skiff/rss and etcd/rss); stop the
// cluster. Only one cluster runs at a time.
//
// Every sub-benchmark runs its workload once, whatever b.N is: the workload
// is the measurement, so -benchtime 1x is the intended setting and a larger
// b.N or -count only reports the same figures again; for another
// measurement, run go test again.
//
// Environment:
//
//	SKIFF_BIN            skiff binary (default: built from ../../cmd/skiff into a temp dir)
//	ETCD_BIN             etcd binary (default: etcd on PATH, else /usr/bin/etcd)
//	STOREBENCH_DURATION  length of each timed run (default 5s)
//	STOREBENCH_KEYS      keys in the store when RSS is read (default 100000)
//	STOREBENCH_WRITERS   comma-separated writer counts (default 1,16,64)
//	STOREBENCH_LOG_DIR   keep the servers' logs there (default: deleted with the temp dirs)
//	STOREBENCH_SKIFF_CLIENT
//	                     roundrobin (default): skiff writes go to the nodes in turn, one
//	                     request each, as etcd's client balances its requests; failover:
//	                     through one raftstore.Client, which stays on its first reachable
//	                     endpoint (the bootstrapping node, usually the leader)
//
// A timed run also ends once it has written its share of STOREBENCH_KEYS, so
// both systems hold exactly the same number of keys when RSS is read.
//
// # BenchmarkAPI
//
// First the reference: start etcd, warm up, then for each client count N
// (16 and 64) put 1 KiB values from N clients for STOREBENCH_DURATION
// (etcd/puts/clients=N, metrics puts/s, p50-ms, p99-ms); stop etcd. Then
// start three masters, wait for every admin kubeconfig and API, and drive
// the API with client-go v0.37.2: unthrottled (QPS -1), protobuf request
// bodies, Accept protobuf-or-JSON (Skiff answers JSON), one client-go
// transport per master (HTTP/2 when the server offers it; Skiff's API
// negotiates HTTP/1.1 today, so one kept-alive connection per request in
// flight), requests taken round-robin over the masters as a load balancer
// would (followers forward writes to the leader):
//
//   - skiff/creates/clients=N: N clients create ConfigMaps with 1 KiB of
//     data and unique names for STOREBENCH_DURATION (creates/s, p50-ms,
//     p99-ms).
//   - skiff/list/pods=P: 64 clients create P small pods (one busybox
//     container) in one namespace, then the whole collection is listed
//     (no limit: the default linearizable read) APIBENCH_LIST_RUNS times as
//     raw bytes, time to the last byte, and as many times through
//     client-go's typed List, decoding included, the runs spread over the
//     masters (median-ms, max-ms, typed-median-ms).
//   - skiff/watch/watchers=W: W watchers, each on a connection of its own,
//     spread over the masters, watch ConfigMaps of one namespace from one
//     resourceVersion; once each has seen a first object, a writer creates
//     ConfigMaps at APIBENCH_WATCH_RATE per second for
//     APIBENCH_WATCH_DURATION, and every (watcher, event) pair's latency is
//     counted from just before the write's request (p50-ms, p99-ms) and
//     from its acknowledgement (ack-p50-ms, ack-p99-ms). A missing or
//     repeated event fails the run.
//
// The table at the end judges the targets: API creates/s at 64
// clients >= 0.5 x etcd puts/s at 64 clients; create p99 <= 100 ms at 16
// clients; the median list <= 500 ms (raw bytes: what the server costs,
// without client-go's decoding); watch p99 <= 50 ms, from the request.
// Beside each phase it prints the "other load": the cores that processes
// outside the benchmark (and hypervisor steal) kept busy meanwhile, from
// /proc; above a quarter of a core the run is flagged NOISY.
//
// Environment, besides SKIFF_BIN, ETCD_BIN, STOREBENCH_DURATION and
// STOREBENCH_LOG_DIR above:
//
//	APIBENCH_CLIENTS         comma-separated client counts (default 16,64)
//	APIBENCH_PODS            pods to list (default 10000)
//	APIBENCH_LIST_RUNS       runs of each list kind (default 5)
//	APIBENCH_WATCHERS        watchers (default 100)
//	APIBENCH_WATCH_RATE      creates per second while watched (default 50)
//	APIBENCH_WATCH_DURATION  length of the watched writes (default 10s)
//	APIBENCH_PROFILE_DIR     write CPU profiles of every master, taken from
//	                         /debug/pprof during each create run, the list
//	                         runs and the watched writes, there (and of
//	                         the scheduling runs)
//
// BenchmarkScheduling (schedbench_test.go) registers hollow nodes through
// three masters, creates pods with 64 clients and times every bind and
// every Running from the hollow nodes' own pod watch; target >= 1,000 pods
// bound/s end to end.
// SCHEDBENCH_SIZES sets its sizes as NODESxPODS[,NODESxPODS...] (default
// 1000x10000,5000x30000). BenchmarkNodeLoss (nodeloss_test.go) stops one of
// six hollow nodes under a 30-pod Deployment and times until every pod runs
// elsewhere; target <= 10 s.
package storebench
