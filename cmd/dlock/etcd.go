//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func init() {
	backends["etcd"] = backend{open: openEtcd, multiHost: true}
	backends["etcds"] = backend{open: openEtcd, multiHost: true}
}

// etcdDefaultPort is the port of an etcd endpoint that names none.
const etcdDefaultPort = "2379"

// etcdDialTimeout bounds the first connection of a client with a user,
// which authenticates when created, when the call has no deadline.
const etcdDialTimeout = 5 * time.Second

// openEtcd opens an etcd://[user:password@]host:port[,host:port...] URL:
// the client endpoints of one etcd cluster, one node. etcd:// speaks plain
// HTTP, etcds:// TLS with the system's roots. user:password is etcd's own
// authentication. The client connects on the node's first call.
func openEtcd(_ context.Context, _ string, u *url.URL) (dlock.Node, string, func() error, error) {
	if u.Path != "" && u.Path != "/" {
		return nil, "", nil, fmt.Errorf("bad URL: unexpected path %q; want %s://[user:password@]host:port[,host:port...]", u.Path, u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, "", nil, fmt.Errorf("bad URL: no query or fragment allowed; want %s://[user:password@]host:port[,host:port...]", u.Scheme)
	}
	scheme := "http://"
	var tlsCfg *tls.Config
	if u.Scheme == "etcds" {
		scheme = "https://"
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	var endpoints, hosts []string
	for h := range strings.SplitSeq(u.Host, ",") {
		if h == "" {
			return nil, "", nil, errors.New("bad URL: empty host in the endpoint list")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), etcdDefaultPort
			if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
				return nil, "", nil, fmt.Errorf("bad URL: bad endpoint %q: want host:port", h)
			}
		}
		if host == "" || port == "" {
			return nil, "", nil, fmt.Errorf("bad URL: bad endpoint %q: want host:port", h)
		}
		hp := net.JoinHostPort(host, port)
		hosts = append(hosts, hp)
		endpoints = append(endpoints, scheme+hp)
	}
	cfg := clientv3.Config{
		Endpoints: endpoints,
		TLS:       tlsCfg,
		// The client's own log lines would mix with dlock's on stderr:
		// its failures reach dlock as errors, which dlock logs.
		Logger: zap.NewNop(),
	}
	if u.User != nil {
		pw, ok := u.User.Password()
		if u.User.Username() == "" || !ok || pw == "" {
			return nil, "", nil, errors.New("bad URL: etcd authentication needs both user and password")
		}
		cfg.Username, cfg.Password = u.User.Username(), pw
	}
	var cli *clientv3.Client
	n := newLazyNode(etcd.Granularity, func(ctx context.Context) (fullNode, error) {
		c := cfg
		c.DialTimeout = etcdDialTimeout
		if d, ok := ctx.Deadline(); ok {
			c.DialTimeout = max(time.Until(d), time.Millisecond)
		}
		var err error
		cli, err = clientv3.New(c)
		if err != nil {
			return nil, scrub(err, u)
		}
		return etcd.NewNode(cli), nil
	})
	closeFn := func() error {
		n.sem <- struct{}{} // waits for a setup in progress (bounded by DialTimeout)
		defer func() { <-n.sem }()
		if cli != nil {
			return cli.Close()
		}
		return nil
	}
	slices.Sort(hosts)
	return n, "etcd " + strings.Join(slices.Compact(hosts), ","), closeFn, nil
}
