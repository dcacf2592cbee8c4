package raftstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-sh/skiff/raftstore/internal/command"
	"github.com/skiff-sh/skiff/raftstore/internal/netmux"
	"github.com/skiff-sh/skiff/raftstore/internal/rpc"
)

// ClientConfig configures a remote Client.
type ClientConfig struct {
	// Endpoints are peer addresses of store nodes (their BindAddr).
	Endpoints []string
	// TLS secures the connections when set (the nodes' ClientTLS side).
	TLS *tls.Config
	// Network defaults to TCP.
	Network Network
	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
}

// Client talks to a store cluster from another process. Each call goes to
// one endpoint, which forwards writes to the leader; a call that could not be
// sent moves on to the next endpoint. Safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	conns []*rpc.Client
	next  atomic.Uint32
	once  sync.Once
}

// NewClient returns a client of the given endpoints. It connects lazily.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("raftstore: client needs at least one endpoint")
	}
	if cfg.Network == nil {
		cfg.Network = tcpNetwork{}
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	c := &Client{cfg: cfg}
	for _, addr := range cfg.Endpoints {
		c.conns = append(c.conns, rpc.NewClient(func(ctx context.Context) (net.Conn, error) {
			return netmux.Dial(ctx, cfg.Network.Dial, addr, cfg.TLS, 10*time.Second, netmux.RPC)
		}))
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.once.Do(func() {
		for _, conn := range c.conns {
			conn.Close()
		}
	})
	return nil
}

// Endpoint returns a client bound to the i-th endpoint only, sharing connections.
func (c *Client) Endpoint(i int) *Client {
	return &Client{cfg: c.cfg, conns: []*rpc.Client{c.conns[i]}}
}

// call sends one request, moving to the next endpoint while the request
// could not be sent, until ctx ends.
func (c *Client) call(ctx context.Context, method byte, payload []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	start := int(c.next.Load())
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.conns)
		resp, err := c.conns[i].Call(ctx, method, payload)
		var re *rpc.RemoteError
		switch {
		case err == nil:
			return resp, nil
		case errors.As(err, &re):
			return nil, decodeError(re.Payload)
		case errors.Is(err, rpc.ErrNotSent):
			c.next.Store(uint32(i + 1))
			if attempt%len(c.conns) == len(c.conns)-1 {
				select {
				case <-ctx.Done():
					return nil, fmt.Errorf("%w: no endpoint reachable: %v", ErrNoLeader, err)
				case <-time.After(50 * time.Millisecond):
				}
			}
			continue
		case method == methodWrite:
			return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		}
		return nil, err
	}
}

// Txn applies txn atomically and returns its result.
func (c *Client) Txn(ctx context.Context, txn *Txn) (*TxnResult, error) {
	if err := validateTxn(txn); err != nil {
		return nil, err
	}
	resp, err := c.call(ctx, methodWrite, command.EncodeTxn(txn))
	if err != nil {
		return nil, err
	}
	return command.DecodeTxnResult(resp)
}

// Create is Store.Create, remotely.
func (c *Client) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return create(ctx, c, key, value)
}

// Put is Store.Put, remotely.
func (c *Client) Put(ctx context.Context, key string, value []byte) (int64, *KeyValue, error) {
	return put(ctx, c, key, value)
}

// Update is Store.Update, remotely.
func (c *Client) Update(ctx context.Context, key string, value []byte, expected int64) (KeyValue, error) {
	return update(ctx, c, key, value, expected)
}

// Delete is Store.Delete, remotely.
func (c *Client) Delete(ctx context.Context, key string, expected int64) (KeyValue, int64, error) {
	return del(ctx, c, key, expected)
}

func (c *Client) rangeCall(ctx context.Context, req *rangeRequest) (ListResult, int64, error) {
	resp, err := c.call(ctx, methodRange, req.encode())
	if err != nil {
		return ListResult{}, 0, err
	}
	d := decoder{b: resp}
	var res ListResult
	res.More = d.uvarint() == 1
	res.Revision = d.varint()
	n := d.varint()
	if req.count {
		return res, n, d.err
	}
	for i := int64(0); i < n && d.err == nil; i++ {
		if kv := d.kv(); kv != nil {
			res.KVs = append(res.KVs, *kv)
		}
	}
	if d.err != nil {
		return ListResult{}, 0, fmt.Errorf("raftstore: malformed range response: %w", d.err)
	}
	return res, n, nil
}

// Get is Store.Get, remotely, served by whichever endpoint the call reaches.
func (c *Client) Get(ctx context.Context, key string, o ReadOptions) (*KeyValue, int64, error) {
	res, _, err := c.rangeCall(ctx, &rangeRequest{prefix: key, get: true, opts: ListOptions{ReadOptions: o}})
	if err != nil || len(res.KVs) == 0 {
		return nil, res.Revision, err
	}
	return &res.KVs[0], res.Revision, nil
}

// List is Store.List, remotely.
func (c *Client) List(ctx context.Context, prefix string, o ListOptions) (ListResult, error) {
	res, _, err := c.rangeCall(ctx, &rangeRequest{prefix: prefix, opts: o})
	return res, err
}

// Count is Store.Count, remotely.
func (c *Client) Count(ctx context.Context, prefix string, o ReadOptions) (int64, int64, error) {
	res, n, err := c.rangeCall(ctx, &rangeRequest{prefix: prefix, count: true, opts: ListOptions{ReadOptions: o}})
	return n, res.Revision, err
}

// Status returns the status of whichever endpoint the call reaches; use
// Endpoint(i).Status for one node in particular.
func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.call(ctx, methodStatus, nil)
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal(resp, &st); err != nil {
		return Status{}, fmt.Errorf("raftstore: malformed status: %w", err)
	}
	return st, nil
}

// Join asks the cluster to admit node id at addr as a voter.
func (c *Client) Join(ctx context.Context, id, addr string) error {
	_, err := c.call(ctx, methodJoin, appendString(appendString(nil, id), addr))
	return err
}

// Remove asks the cluster to remove node id.
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.call(ctx, methodRemove, appendString(nil, id))
	return err
}
