//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/charconstpointer/dlock"
)

// backend opens the nodes of one URL scheme. Each backend registers itself
// in backends from a file of its own (redis.go); a new store is a new file.
type backend struct {
	// open connects to the node at raw (already parsed into u). It returns
	// the node, an identity that two URLs naming the same store share (so
	// that one store cannot count twice towards the quorum), and a function
	// that closes the connection.
	open func(ctx context.Context, raw string, u *url.URL) (n dlock.Node, id string, closeFn func() error, err error)
	// multiHost reports that one URL of the scheme may name several hosts
	// separated by commas (scheme://h1:p1,h2:p2/...): in the node list, an
	// item without a scheme that follows such a URL's host list continues it.
	multiHost bool
}

// backends maps a URL scheme to its backend.
var backends = map[string]backend{}

// node is one opened node.
type node struct {
	dlock.Node
	label string // the URL with its password redacted: the only form ever printed
	close func() error
}

// openNodes opens every node of the comma-separated URL list. Errors name
// the node by its position and redacted URL, never with its password.
func openNodes(ctx context.Context, list string) (nodes []node, err error) {
	defer func() {
		if err != nil {
			closeNodes(nodes)
			nodes = nil
		}
	}()
	ids := map[string]int{}
	for i, raw := range splitNodes(list) {
		if raw == "" {
			return nodes, fmt.Errorf("node %d: empty URL in the node list", i+1)
		}
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its message would repeat the URL, password and all
			}
			return nodes, fmt.Errorf("node %d: %s: bad URL: %v", i+1, redactRaw(raw), err)
		}
		label := redactURL(u)
		b, ok := backends[u.Scheme]
		if !ok {
			why := fmt.Sprintf("unsupported scheme %q", u.Scheme)
			if u.Scheme == "" {
				why = "missing scheme"
			}
			return nodes, fmt.Errorf("node %d: %s: %s (supported: %s)", i+1, label, why, schemeList())
		}
		if u.Host == "" && u.Opaque != "" {
			return nodes, fmt.Errorf("node %d: %s: bad URL: want %s://host:port", i+1, label, u.Scheme)
		}
		n, id, closeFn, err := b.open(ctx, raw, u)
		if err != nil {
			return nodes, fmt.Errorf("node %d: %s: %w", i+1, label, err)
		}
		nodes = append(nodes, node{Node: n, label: label, close: closeFn})
		if j, dup := ids[id]; dup {
			return nodes, fmt.Errorf("node %d: %s: the same store as node %d; one store must not count twice towards the majority",
				i+1, label, j+1)
		}
		ids[id] = i
	}
	return nodes, nil
}

// splitNodes splits the comma-separated node list into URLs. An item that
// has no scheme continues the URL before it when that URL's scheme takes
// several hosts and it has no path, query or fragment yet: in
// "etcd://h1:2379,h2:2379,redis://h3:6379" the first two items are one URL.
func splitNodes(list string) []string {
	var out []string
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if n := len(out); n > 0 && item != "" && !strings.Contains(item, "://") {
			prev := out[n-1]
			if scheme, rest, ok := strings.Cut(prev, "://"); ok && backends[strings.ToLower(scheme)].multiHost &&
				!strings.ContainsAny(rest, "/?#") {
				out[n-1] = prev + "," + item
				continue
			}
		}
		out = append(out, item)
	}
	return out
}

// secretQuery lists the query parameters that carry a password
// (libpq's password and sslpassword).
var secretQuery = []string{"password", "sslpassword"}

// redactURL returns u as it may be printed: its password, and the values of
// the query parameters that carry one, replaced by "xxxxx".
func redactURL(u *url.URL) string {
	q := u.Query()
	found := false
	for k := range q {
		if slices.Contains(secretQuery, strings.ToLower(k)) {
			q[k] = []string{"xxxxx"}
			found = true
		}
	}
	if !found {
		return u.Redacted()
	}
	c := *u
	c.RawQuery = q.Encode()
	return c.Redacted()
}

// secretsOf returns the passwords in u: its userinfo's and those of its
// query parameters.
func secretsOf(u *url.URL) []string {
	var s []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			s = append(s, pw, url.PathEscape(pw), url.QueryEscape(pw))
		}
	}
	for k, vs := range u.Query() {
		if slices.Contains(secretQuery, strings.ToLower(k)) {
			for _, v := range vs {
				if v != "" {
					s = append(s, v, url.QueryEscape(v))
				}
			}
		}
	}
	return s
}

// closeNodes closes every node's connection.
func closeNodes(nodes []node) {
	for _, n := range nodes {
		if n.close != nil {
			_ = n.close()
		}
	}
}

func schemeList() string {
	s := make([]string, 0, len(backends))
	for k := range backends {
		s = append(s, k+"://")
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// redactRaw hides the password of a URL that url.Parse rejected, so that
// it can appear in an error message: the part of the authority between the
// first ':' and the last '@' becomes "xxxxx", and so do the values of the
// query parameters password and sslpassword.
func redactRaw(raw string) string {
	return secretParam.ReplaceAllString(redactUserinfo(raw), "${1}xxxxx")
}

// secretParam matches a password query parameter up to its value.
var secretParam = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)

func redactUserinfo(raw string) string {
	rest := raw
	head := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		head, rest = raw[:i+3], raw[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	user := rest[:at]
	if c := strings.Index(user, ":"); c >= 0 {
		user = user[:c] + ":xxxxx"
	}
	return head + user + rest[at:]
}
