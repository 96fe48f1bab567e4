package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/VictoriaMetrics/metricsql"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/reid-project/reid/internal/testassets"
)

// ruleFile is the part of a Prometheus rule file that the test reads.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRules checks deploy/prometheus/reid-rules.yml against what reid serves: every
// expression parses as PromQL (metricsql's parser, a superset of PromQL), every annotation is a
// template Prometheus can expand, and every series an expression selects, with its label names and
// values, is one that a running `reid run` (with an alert webhook) serves on its ops and lookup
// addresses. A renamed metric or label breaks this test instead of silencing an alert.
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/reid-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	decoder := yaml.NewDecoder(bytes.NewReader(raw))
	decoder.KnownFields(true)
	if err := decoder.Decode(&rules); err != nil {
		t.Fatalf("reid-rules.yml: %v", err)
	}
	served := scrapeRunningPipeline(t)

	alertName := regexp.MustCompile(`^Reid[A-Z][A-Za-z]+$`)
	seen := map[string]bool{}
	for _, group := range rules.Groups {
		for _, rule := range group.Rules {
			where := group.Name + "/" + rule.Alert
			if !alertName.MatchString(rule.Alert) || seen[rule.Alert] {
				t.Errorf("%s: alert names are unique and ReidSomething", where)
			}
			seen[rule.Alert] = true
			if rule.For != "" {
				if _, err := time.ParseDuration(rule.For); err != nil {
					t.Errorf("%s: for: %v", where, err)
				}
			}
			if severity := rule.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, severity) {
				t.Errorf("%s: severity %q, want info, warning or critical", where, severity)
			}
			if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", where)
			}
			for name, text := range rule.Annotations {
				if err := expandAnnotation(text); err != nil {
					t.Errorf("%s: annotation %s: %v", where, name, err)
				}
			}
			expr, err := metricsql.Parse(rule.Expr)
			if err != nil {
				t.Errorf("%s: expr: %v", where, err)
				continue
			}
			metricsql.VisitAll(expr, func(node metricsql.Expr) {
				selector, ok := node.(*metricsql.MetricExpr)
				if !ok {
					return
				}
				checkSelector(t, where, selector, served)
			})
		}
	}
	if len(seen) < 10 {
		t.Errorf("%d alerts in the file", len(seen))
	}
}

// servedSeries maps each metric name to its label names and the values seen of each.
type servedSeries map[string]map[string]map[string]bool

func checkSelector(t *testing.T, where string, selector *metricsql.MetricExpr, served servedSeries) {
	t.Helper()
	for _, filters := range selector.LabelFilterss {
		name := ""
		for _, filter := range filters {
			if filter.Label == "__name__" {
				name = filter.Value
			}
		}
		if name == "up" {
			continue // Prometheus's own, per scrape target
		}
		labels, ok := served[name]
		if !ok {
			t.Errorf("%s: reid serves no %s", where, name)
			continue
		}
		for _, filter := range filters {
			if filter.Label == "__name__" {
				continue
			}
			values, ok := labels[filter.Label]
			if !ok {
				t.Errorf("%s: %s has no label %s (it has %v)", where, name, filter.Label, slices.Sorted(maps.Keys(labels)))
				continue
			}
			if !filter.IsRegexp && !filter.IsNegative && !values[filter.Value] {
				t.Errorf("%s: %s{%s=%q} is never served (values: %v)", where, name, filter.Label, filter.Value, slices.Sorted(maps.Keys(values)))
			}
		}
	}
}

// expandAnnotation expands text as Prometheus does an alert's annotation, with its variables and
// the template functions the file uses.
func expandAnnotation(text string) error {
	funcs := template.FuncMap{
		"humanize":           func(v float64) string { return fmt.Sprintf("%.4g", v) },
		"humanize1024":       func(v float64) string { return fmt.Sprintf("%.4g", v/1024) },
		"humanizePercentage": func(v float64) string { return fmt.Sprintf("%.4g%%", v*100) },
	}
	preamble := "{{$labels := .Labels}}{{$value := .Value}}"
	parsed, err := template.New("annotation").Option("missingkey=error").Funcs(funcs).Parse(preamble + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels map[string]string
		Value  float64
	}{map[string]string{"camera": "gate", "group": "reid-embedder", "instance": "host:8080", "job": "reid-run"}, 0.25}
	return parsed.Execute(&bytes.Buffer{}, data)
}

// scrapeRunningPipeline runs `reid run` on a few frames of video, with an alert webhook, and
// returns the series it serves on its ops and lookup addresses once it has embedded crops.
func scrapeRunningPipeline(t *testing.T) servedSeries {
	t.Helper()
	dataDir := pipelineFixture(t)
	opsAddr, lookupAddr := freeAddr(t), freeAddr(t)
	env := []string{"REID_OPS_ADDR=" + opsAddr, "REID_LOOKUP_ADDR=" + lookupAddr, "REID_LOOKUP_ALERT_WEBHOOK=http://127.0.0.1:9/alerts"}
	child := startChild(t, dataDir, env, "run", "--source", testassets.Path(t, "video/vtest.avi"), "--camera", "gate", "--max-frames", "30")
	defer func() {
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
	}()
	waitForMetric(t, child, opsAddr, "reid_embedder_crops_total", 1, 2*time.Minute)
	if status, _ := get(t, "http://"+lookupAddr+"/v1/cameras"); status != http.StatusOK {
		t.Fatalf("GET /v1/cameras: %d", status)
	}
	served := servedSeries{}
	for _, addr := range []string{opsAddr, lookupAddr} {
		_, body := get(t, "http://"+addr+"/metrics")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("/metrics of %s: %v", addr, err)
		}
		for name, family := range families {
			if served[name] == nil {
				served[name] = map[string]map[string]bool{}
			}
			for _, metric := range family.GetMetric() {
				addLabels(served[name], metric)
			}
		}
	}
	return served
}

func addLabels(labels map[string]map[string]bool, metric *dto.Metric) {
	for _, pair := range metric.GetLabel() {
		if labels[pair.GetName()] == nil {
			labels[pair.GetName()] = map[string]bool{}
		}
		labels[pair.GetName()][pair.GetValue()] = true
	}
}
