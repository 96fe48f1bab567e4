package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix is the prefix of environment variables that override the file: REID_INDEX_BACKEND
// sets index.backend.
const EnvPrefix = "REID"

// Load builds the effective Options: defaults, then the YAML file at path (if not empty), then
// REID_* environment variables, then the flags in flags that were set and whose names appear in
// flagKeys (flag name -> config key). Unknown keys in the file are rejected by name, and so are
// values of the wrong type; the result is validated.
func Load(path string, environ []string, flags *pflag.FlagSet, flagKeys map[string]string) (Options, error) {
	v := viper.New()
	defaults, err := toMap(Default())
	if err != nil {
		return Options{}, err
	}
	keys := flatten("", defaults)
	for key, value := range keys {
		v.SetDefault(key, value)
	}
	// sources says where each key's value came from, for errors about values of the wrong type.
	sources := map[string]string{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Options{}, fmt.Errorf("config file: %w", err)
		}
		var fileValues map[string]any
		if err := yaml.Unmarshal(raw, &fileValues); err != nil {
			return Options{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := checkKnownKeys(reflect.TypeOf(Options{}), "", fileValues); err != nil {
			return Options{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := v.MergeConfigMap(fileValues); err != nil {
			return Options{}, fmt.Errorf("config file %s: %w", path, err)
		}
		for key, value := range flatten("", fileValues) {
			if _, isList := value.([]any); isList {
				sources[key] = "in " + path
			} else {
				sources[key] = fmt.Sprintf("%q in %s", fmt.Sprint(value), path)
			}
		}
	}
	if err := applyEnvironment(v, keys, environ, sources); err != nil {
		return Options{}, err
	}
	if flags != nil {
		for flagName, key := range flagKeys {
			flag := flags.Lookup(flagName)
			if flag != nil && flag.Changed {
				v.Set(key, flag.Value.String())
				sources[key] = fmt.Sprintf("--%s=%q", flagName, flag.Value.String())
			}
		}
	}
	var options Options
	decoderConfig := &mapstructure.DecoderConfig{
		Result:           &options,
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	}
	decoder, err := mapstructure.NewDecoder(decoderConfig)
	if err != nil {
		return Options{}, err
	}
	if err := decoder.Decode(v.AllSettings()); err != nil {
		return Options{}, describeDecodeError(err, sources)
	}
	if err := options.Validate(); err != nil {
		return Options{}, err
	}
	return options, nil
}

// applyEnvironment sets every REID_* variable that names a known key; an unknown REID_* name is
// an error so that a typo does not silently do nothing.
func applyEnvironment(v *viper.Viper, keys map[string]any, environ []string, sources map[string]string) error {
	byEnvName := map[string]string{}
	for key := range keys {
		byEnvName[EnvName(key)] = key
	}
	var errs []error
	for _, entry := range environ {
		name, value, ok := strings.Cut(entry, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix+"_") {
			continue
		}
		key, known := byEnvName[name]
		if !known {
			if ignoredEnv[name] {
				continue
			}
			errs = append(errs, fmt.Errorf("environment %s: no config key %q", name, envKeyGuess(name)))
			continue
		}
		v.Set(key, value)
		sources[key] = fmt.Sprintf("%s=%q", name, value)
	}
	return errors.Join(errs...)
}

// describeDecodeError turns mapstructure's errors (values of the wrong type) into one FieldError
// per key, each saying where the value came from: mapstructure alone prints a multi-line message
// that names the key but not the variable, flag or file to fix.
func describeDecodeError(err error, sources map[string]string) error {
	var described []error
	var collect func(error)
	collect = func(err error) {
		switch typed := err.(type) {
		case *mapstructure.DecodeError:
			message := typed.Unwrap().Error()
			// A key inside a list (cameras[0].sample_fps) came with the list's key.
			source, ok := sources[typed.Name()]
			if !ok {
				source, ok = sources[strings.SplitN(typed.Name(), "[", 2)[0]]
			}
			if ok {
				message += " (" + source + ")"
			}
			described = append(described, &FieldError{Key: typed.Name(), Message: message})
		case interface{ Unwrap() []error }:
			for _, inner := range typed.Unwrap() {
				collect(inner)
			}
		default:
			if inner := errors.Unwrap(err); inner != nil {
				collect(inner)
				return
			}
			described = append(described, fmt.Errorf("config: %w", err))
		}
	}
	collect(err)
	return errors.Join(described...)
}

// ignoredEnv are REID_* variables that configure tests and tools, not the running system.
var ignoredEnv = map[string]bool{
	"REID_MILVUS_ADDR":   true,
	"REID_KAFKA_BROKERS": true,
	"REID_SHARED":        true,
	"REID_BENCH":         true,
	"REID_DEMO_TRAIN":    true, // make demo's switch (scripts/demo.sh), set around every reid it runs
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
}

func envKeyGuess(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, EnvPrefix+"_"))
}

// checkKnownKeys rejects keys in a file that no Options field has, naming the full key.
func checkKnownKeys(structType reflect.Type, prefix string, values map[string]any) error {
	fields := map[string]reflect.Type{}
	for i := 0; i < structType.NumField(); i++ {
		field := structType.Field(i)
		name := strings.Split(field.Tag.Get("mapstructure"), ",")[0]
		fields[name] = field.Type
	}
	var errs []error
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := prefix + name
		fieldType, ok := fields[name]
		if !ok {
			errs = append(errs, &FieldError{Key: key, Message: "unknown key"})
			continue
		}
		switch {
		case fieldType.Kind() == reflect.Struct && fieldType.String() != "time.Duration":
			nested, ok := values[name].(map[string]any)
			if !ok {
				errs = append(errs, &FieldError{Key: key, Message: "must be a mapping"})
				continue
			}
			errs = append(errs, checkKnownKeys(fieldType, key+".", nested))
		case fieldType.Kind() == reflect.Slice && fieldType.Elem().Kind() == reflect.Struct:
			items, ok := values[name].([]any)
			if !ok {
				errs = append(errs, &FieldError{Key: key, Message: "must be a list"})
				continue
			}
			for i, item := range items {
				nested, ok := item.(map[string]any)
				if !ok {
					errs = append(errs, &FieldError{Key: fmt.Sprintf("%s[%d]", key, i), Message: "must be a mapping"})
					continue
				}
				errs = append(errs, checkKnownKeys(fieldType.Elem(), fmt.Sprintf("%s[%d].", key, i), nested))
			}
		}
	}
	return errors.Join(errs...)
}

// toMap turns a struct into nested maps keyed by its mapstructure tags.
func toMap(options Options) (map[string]any, error) {
	out := map[string]any{}
	if err := mapstructure.Decode(options, &out); err != nil {
		return nil, err
	}
	return deepMap(out), nil
}

func deepMap(in map[string]any) map[string]any {
	for key, value := range in {
		rv := reflect.ValueOf(value)
		if rv.Kind() == reflect.Struct && rv.Type().String() != "time.Duration" {
			nested := map[string]any{}
			_ = mapstructure.Decode(value, &nested)
			in[key] = deepMap(nested)
		}
	}
	return in
}

// flatten maps nested keys to dotted ones; lists of structs stay whole.
func flatten(prefix string, in map[string]any) map[string]any {
	out := map[string]any{}
	for key, value := range in {
		if nested, ok := value.(map[string]any); ok {
			for nestedKey, nestedValue := range flatten(prefix+key+".", nested) {
				out[nestedKey] = nestedValue
			}
			continue
		}
		out[prefix+key] = value
	}
	return out
}

// Masked returns a copy of options with every secret field that is set replaced by "********".
func Masked(options Options) Options {
	masked := options
	maskValue(reflect.ValueOf(&masked).Elem())
	return masked
}

// MaskURLCredentials masks the user information of a URL for printing and logging: the password
// of rtsp://user:password@host becomes ********, and a user information without a password, which
// some cameras take as a token (rtsp://TOKEN@host), is masked whole. It splits at the last '@', so
// a password with an unencoded '/' or '@' in it (cameras' admin pages allow them) is masked whole
// too; a source that is not a URL with user information comes back as it is.
func MaskURLCredentials(source string) string {
	scheme, rest, ok := strings.Cut(source, "://")
	if !ok {
		return source
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return source
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return scheme + "://********" + rest[at:]
	}
	return scheme + "://" + user + ":********" + rest[at:]
}

func maskValue(value reflect.Value) {
	for i := 0; i < value.NumField(); i++ {
		field := value.Type().Field(i)
		fieldValue := value.Field(i)
		switch {
		case field.Tag.Get("secret") == "url-credentials":
			fieldValue.SetString(MaskURLCredentials(fieldValue.String()))
		case field.Tag.Get("secret") == "true":
			switch fieldValue.Kind() {
			case reflect.String:
				if fieldValue.String() != "" {
					fieldValue.SetString("********")
				}
			case reflect.Slice:
				if fieldValue.Len() > 0 {
					replacement := make([]string, fieldValue.Len())
					for j := range replacement {
						replacement[j] = "********"
					}
					fieldValue.Set(reflect.ValueOf(replacement))
				}
			}
		case fieldValue.Kind() == reflect.Struct && field.Type.String() != "time.Duration":
			maskValue(fieldValue)
		case fieldValue.Kind() == reflect.Slice && field.Type.Elem().Kind() == reflect.Struct:
			copied := reflect.MakeSlice(field.Type, fieldValue.Len(), fieldValue.Len())
			reflect.Copy(copied, fieldValue)
			for j := 0; j < copied.Len(); j++ {
				maskValue(copied.Index(j))
			}
			fieldValue.Set(copied)
		}
	}
}

// YAML renders options as the YAML a config file would hold, with durations as strings.
func YAML(options Options) ([]byte, error) {
	tree, err := toMap(options)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(stringifyDurations(tree))
}

func stringifyDurations(value any) any {
	switch typed := value.(type) {
	case map[string]any:
		for key, nested := range typed {
			typed[key] = stringifyDurations(nested)
		}
		return typed
	case []any:
		for i, nested := range typed {
			typed[i] = stringifyDurations(nested)
		}
		return typed
	case fmt.Stringer:
		return typed.String()
	default:
		rv := reflect.ValueOf(value)
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Struct {
			items := make([]any, rv.Len())
			for i := range items {
				nested := map[string]any{}
				_ = mapstructure.Decode(rv.Index(i).Interface(), &nested)
				items[i] = stringifyDurations(deepMap(nested))
			}
			return items
		}
		return value
	}
}
