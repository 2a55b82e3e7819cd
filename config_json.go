package dlock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// WithConfig sets every field of the lock's LockConfig to c's, for a
// LockConfig decoded from JSON or built by hand. A RetryJitter of 0 means
// none when c came from JSON that named retry_jitter, or was given by
// WithRetryJitter; otherwise it is derived from RetryInterval. Start from
// DefaultLockConfig before decoding, so that fields absent from the JSON
// keep their defaults:
//
//	cfg := dlock.DefaultLockConfig()
//	if err := json.Unmarshal(data, &cfg); err != nil { ... }
//	lock, err := r.Lock(key, "", dlock.WithConfig(cfg))
func WithConfig(c LockConfig) LockOpt {
	return func(dst *LockConfig) { *dst = c }
}

// DefaultLockConfig returns the built-in defaults of a lock: TTL 10s, no
// auto-refresh, RetryInterval 100ms, RetryLimit 32, RetryJitter derived as
// RetryInterval/2, DriftFactor 0.01, no fencing.
func DefaultLockConfig() LockConfig { return defaultLockConfig() }

// lockConfigJSON is LockConfig on the wire: durations as Go duration
// strings ("30s", "1m30s"); numbers, as nanoseconds, are accepted too.
type lockConfigJSON struct {
	TTL             jsonDuration `json:"ttl"`
	RefreshInterval jsonDuration `json:"refresh_interval"`
	RetryInterval   jsonDuration `json:"retry_interval"`
	RetryLimit      int          `json:"retry_limit"`
	RetryJitter     jsonDuration `json:"retry_jitter"`
	DriftFactor     float64      `json:"drift_factor"`
	Fencing         bool         `json:"fencing"`
}

// MarshalJSON encodes the durations as Go duration strings, such as
// {"ttl":"30s",...}. RetryJitter is omitted while it is derived from
// RetryInterval.
func (c LockConfig) MarshalJSON() ([]byte, error) {
	m := map[string]any{
		"ttl":              c.TTL.String(),
		"refresh_interval": c.RefreshInterval.String(),
		"retry_interval":   c.RetryInterval.String(),
		"retry_limit":      c.RetryLimit,
		"drift_factor":     c.DriftFactor,
		"fencing":          c.Fencing,
	}
	if c.jitterSet || c.RetryJitter != 0 {
		m["retry_jitter"] = c.RetryJitter.String()
	}
	return json.Marshal(m)
}

// UnmarshalJSON decodes a LockConfig whose durations are Go duration
// strings ("30s") or numbers of nanoseconds. Fields absent from the input
// keep their values. It does not validate: Lock does, naming the field.
func (c *LockConfig) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("dlock: LockConfig: %w", err)
	}
	in := lockConfigJSON{
		TTL: jsonDuration(c.TTL), RefreshInterval: jsonDuration(c.RefreshInterval),
		RetryInterval: jsonDuration(c.RetryInterval), RetryLimit: c.RetryLimit,
		RetryJitter: jsonDuration(c.RetryJitter), DriftFactor: c.DriftFactor, Fencing: c.Fencing,
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("dlock: LockConfig: %w", err)
	}
	*c = LockConfig{
		TTL: time.Duration(in.TTL), RefreshInterval: time.Duration(in.RefreshInterval),
		RetryInterval: time.Duration(in.RetryInterval), RetryLimit: in.RetryLimit,
		RetryJitter: time.Duration(in.RetryJitter), DriftFactor: in.DriftFactor, Fencing: in.Fencing,
		jitterSet: c.jitterSet,
	}
	if _, ok := fields["retry_jitter"]; ok {
		c.jitterSet = true
	}
	return nil
}

// jsonDuration is a time.Duration read from a Go duration string or a
// number of nanoseconds.
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a duration must be a string such as \"30s\" or a number of nanoseconds, not %s", b)
	}
	*d = jsonDuration(n)
	return nil
}
