// Package storebench benchmarks Skiff's Raft store against etcd 3.4 on
// loopback: three real `skiff server` processes and a three-member etcd
// cluster (Debian's etcd-server, /usr/bin/etcd) run the same write workload in
// one `go test` run, and BenchmarkStore prints both side by side with the
// ratio skiff/etcd and whether Skiff meets its targets.
//
// It is a module of its own so that the etcd client never enters the
// dependency graph of the skiff binary; the main module's `./...` does not
// reach into it. The intended invocation is `make bench`, or:
//
//	make build
//	cd e2e/storebench && SKIFF_BIN=$PWD/../../bin/skiff go test -run '^$' -bench . -benchtime 1x -timeout 60m .
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
package storebench
