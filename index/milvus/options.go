package milvus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/reid-project/reid/config"
)

// Options configures the Milvus backend. The zero value of every field but Address means its
// documented default.
type Options struct {
	// Address is host:port of the Milvus proxy (default port 19530), or an http(s):// URL.
	Address string
	// Database is the Milvus database; default "default".
	Database string
	// User and Password authenticate when Milvus has authorization enabled. Token (an API key or
	// "user:password") takes precedence over them.
	User     string
	Password string
	Token    string
	// TLS connects with TLS, verifying the server against the system roots unless TLSConfig is
	// set. An https:// address turns TLS on too.
	TLS bool
	// TLSConfig overrides the TLS settings (a private CA, a client certificate); it implies TLS.
	TLSConfig *tls.Config
	// Alias is the collection alias lookups read; Activate re-points it. Default "reid_active".
	Alias string
	// CollectionPrefix starts every collection name: <prefix><version>. Default "reid_".
	CollectionPrefix string
	// IndexType is HNSW (default) or IVF_FLAT; Metric is COSINE (default) or IP. Vectors are
	// L2-normalised, so both metrics give the same scores.
	IndexType string
	Metric    string
	// HNSWM and EfConstruction shape an HNSW index (defaults 16 and 200); EfSearch is the search
	// breadth of approximate searches (default 128, raised to K when K is larger).
	HNSWM          int
	EfConstruction int
	EfSearch       int
	// NList is the number of IVF_FLAT clusters (default 1024); NProbe how many an approximate
	// search visits (default 32).
	NList  int
	NProbe int
	// ConnectTimeout bounds Open's connection attempt; default 10s.
	ConnectTimeout time.Duration
	// LoadTimeout bounds waiting for a collection to load; default 2m.
	LoadTimeout time.Duration
	// Logger receives the backend's log lines; default slog.Default().
	Logger *slog.Logger
}

// FromConfig turns the configuration file's index.milvus section into Options.
func FromConfig(milvus config.Milvus) Options {
	return Options{
		Address:          milvus.Address,
		Database:         milvus.Database,
		User:             milvus.User,
		Password:         milvus.Password,
		Token:            milvus.Token,
		TLS:              milvus.TLS,
		Alias:            milvus.Alias,
		CollectionPrefix: milvus.CollectionPrefix,
		IndexType:        milvus.IndexType,
		Metric:           milvus.Metric,
	}
}

// withDefaults fills zero fields and checks the result, reporting every problem at once.
func (o Options) withDefaults() (Options, error) {
	if o.Database == "" {
		o.Database = "default"
	}
	if o.Alias == "" {
		o.Alias = "reid_active"
	}
	if o.CollectionPrefix == "" {
		o.CollectionPrefix = "reid_"
	}
	if o.IndexType == "" {
		o.IndexType = "HNSW"
	}
	if o.Metric == "" {
		o.Metric = "COSINE"
	}
	defaultInt := func(value *int, fallback int) {
		if *value == 0 {
			*value = fallback
		}
	}
	defaultInt(&o.HNSWM, 16)
	defaultInt(&o.EfConstruction, 200)
	defaultInt(&o.EfSearch, 128)
	defaultInt(&o.NList, 1024)
	defaultInt(&o.NProbe, 32)
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("milvus: "+format, args...)) }
	if o.Address == "" {
		bad("address must be set (host:port, e.g. localhost:19530)")
	}
	if err := validName(o.Alias); err != nil {
		bad("alias %q: %v", o.Alias, err)
	}
	if err := validPrefix(o.CollectionPrefix); err != nil {
		bad("collection prefix %q: %v", o.CollectionPrefix, err)
	}
	if o.IndexType != "HNSW" && o.IndexType != "IVF_FLAT" {
		bad("index type must be HNSW or IVF_FLAT, not %q", o.IndexType)
	}
	if o.Metric != "COSINE" && o.Metric != "IP" {
		bad("metric must be COSINE or IP, not %q", o.Metric)
	}
	if o.HNSWM < 2 || o.HNSWM > 2048 {
		bad("HNSW M must be 2-2048, not %d", o.HNSWM)
	}
	if o.EfConstruction < 1 {
		bad("efConstruction must be >= 1, not %d", o.EfConstruction)
	}
	if o.EfSearch < 1 || o.EfSearch > maxEf {
		bad("ef must be 1-%d, not %d", maxEf, o.EfSearch)
	}
	if o.NList < 1 || o.NList > 65536 {
		bad("nlist must be 1-65536, not %d", o.NList)
	}
	if o.NProbe < 1 || o.NProbe > o.NList {
		bad("nprobe must be 1-nlist (%d), not %d", o.NList, o.NProbe)
	}
	if o.ConnectTimeout < 0 || o.LoadTimeout < 0 {
		bad("timeouts must be positive")
	}
	return o, errors.Join(errs...)
}
