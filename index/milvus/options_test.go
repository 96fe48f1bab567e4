package milvus

import (
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
)

func TestFromConfigDefaults(t *testing.T) {
	options, err := FromConfig(config.Default().Index.Milvus).withDefaults()
	if err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	want := Options{
		Address: "localhost:19530", Database: "default", Alias: "reid_active", CollectionPrefix: "reid_",
		IndexType: "HNSW", Metric: "COSINE", HNSWM: 16, EfConstruction: 200, EfSearch: 128, NList: 1024, NProbe: 32,
		ConnectTimeout: 10 * time.Second, LoadTimeout: 2 * time.Minute,
	}
	options.Logger = nil
	if options != want {
		t.Errorf("options from the default config = %+v, want %+v", options, want)
	}
}

func TestFromConfigCopiesEverything(t *testing.T) {
	milvus := config.Milvus{
		Address: "milvus.example:443", Database: "reid", User: "u", Password: "p", Token: "t", TLS: true,
		Alias: "lookups", IndexType: "IVF_FLAT", Metric: "IP", CollectionPrefix: "gallery_",
	}
	options := FromConfig(milvus)
	if options.Address != milvus.Address || options.Database != milvus.Database || options.User != "u" ||
		options.Password != "p" || options.Token != "t" || !options.TLS || options.Alias != "lookups" ||
		options.IndexType != "IVF_FLAT" || options.Metric != "IP" || options.CollectionPrefix != "gallery_" {
		t.Errorf("FromConfig(%+v) = %+v", milvus, options)
	}
	if _, err := options.withDefaults(); err != nil {
		t.Errorf("valid options rejected: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name    string
		options Options
		want    string
	}{
		{"no address", Options{}, "address"},
		{"alias with a dash", Options{Address: "x:1", Alias: "reid-active"}, "alias"},
		{"alias starting with a digit", Options{Address: "x:1", Alias: "1active"}, "alias"},
		{"prefix with a dot", Options{Address: "x:1", CollectionPrefix: "reid."}, "prefix"},
		{"index type", Options{Address: "x:1", IndexType: "IVF_PQ"}, "index type"},
		{"metric", Options{Address: "x:1", Metric: "L2"}, "metric"},
		{"nprobe above nlist", Options{Address: "x:1", NList: 8, NProbe: 9}, "nprobe"},
		{"ef", Options{Address: "x:1", EfSearch: 40000}, "ef"},
	}
	for _, c := range cases {
		_, err := c.options.withDefaults()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %s", c.name, err, c.want)
		}
	}
	// Every problem is reported at once.
	_, err := Options{Alias: "a-b", Metric: "L2"}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "address") || !strings.Contains(err.Error(), "alias") || !strings.Contains(err.Error(), "metric") {
		t.Errorf("several problems reported as %v", err)
	}
}
