// Package milvusfake is an in-process fake of the Milvus gRPC service (milvuspb.MilvusService
// from milvus-proto go-api), for testing code that talks to Milvus through the real Go client
// (github.com/milvus-io/milvus/client/v2) when no Milvus server can run.
//
// It is a protocol-level fake, not a Milvus: it keeps every collection in memory, searches by
// brute force (so "approximate" indexes give exact answers), is always strongly consistent, and
// implements only the calls a vector-search client needs: Connect, collections (create,
// describe, has, show, drop, statistics), vector indexes (create, describe, drop), load/release
// and load state, insert/upsert/delete, query (with count(*)), search, flush, and aliases. Filter
// expressions are parsed by a small parser for the subset described in expr.go. Requests are
// validated the way Milvus validates them where that is cheap (schema, dimensions, varchar
// lengths, duplicate primary keys in one upsert, search before load, ef < topk, metric mismatch)
// and answered with Milvus's own status codes, so client error handling is exercised too.
// Everything else answers codes.Unimplemented.
package milvusfake

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultDatabase is the database every Milvus has.
const DefaultDatabase = "default"

// Options configures a fake server. The zero value accepts every caller in database "default".
type Options struct {
	// Credentials, when not empty, are the accepted credentials: "user:password" pairs or API
	// tokens, compared with what the client sends in its authorization header. Calls without one
	// fail with codes.Unauthenticated, as Milvus with authorization enabled does.
	Credentials []string
	// Databases are created in addition to "default".
	Databases []string
	// TLS, when set, makes the server speak TLS with this configuration.
	TLS *tls.Config
}

// Server is a running fake. Close it when done.
type Server struct {
	milvuspb.UnimplementedMilvusServiceServer

	listener net.Listener
	server   *grpc.Server
	served   chan struct{}
	tokens   map[string]bool

	mu        sync.Mutex
	databases map[string]*database
	nextID    int64
	clock     uint64
	calls     map[string]int
}

type database struct {
	collections map[string]*collection
	// aliases maps alias -> collection name.
	aliases map[string]string
}

// Start listens on a free loopback port and serves until Close.
func Start(options Options) (*Server, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("milvusfake: listen: %w", err)
	}
	s := &Server{
		listener:  listener,
		served:    make(chan struct{}),
		tokens:    map[string]bool{},
		databases: map[string]*database{},
		nextID:    449_000_000_000_000_000, // Milvus ids are large; small ones would hide int32 truncation bugs.
		calls:     map[string]int{},
	}
	for _, credential := range options.Credentials {
		s.tokens[base64.StdEncoding.EncodeToString([]byte(credential))] = true
	}
	for _, name := range append([]string{DefaultDatabase}, options.Databases...) {
		s.databases[name] = &database{collections: map[string]*collection{}, aliases: map[string]string{}}
	}
	serverOptions := []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.intercept), grpc.MaxRecvMsgSize(256 << 20)}
	if options.TLS != nil {
		serverOptions = append(serverOptions, grpc.Creds(credentials.NewTLS(options.TLS)))
	}
	s.server = grpc.NewServer(serverOptions...)
	milvuspb.RegisterMilvusServiceServer(s.server, s)
	go func() {
		defer close(s.served)
		_ = s.server.Serve(listener) // returns when Close stops the server
	}()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close stops the server, dropping open connections, and waits for it to finish.
func (s *Server) Close() {
	s.server.Stop()
	<-s.served
}

// Calls returns how many times each RPC (by method name, e.g. "Search") has been called.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := make(map[string]int, len(s.calls))
	for method, count := range s.calls {
		calls[method] = count
	}
	return calls
}

type databaseKey struct{}

// intercept counts calls, checks credentials and resolves the database header, as Milvus's proxy
// interceptors do.
func (s *Server) intercept(ctx context.Context, request any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
	if len(s.tokens) > 0 {
		authorized := false
		for _, value := range md.Get("authorization") {
			authorized = authorized || s.tokens[value]
		}
		if !authorized {
			return nil, status.Error(codes.Unauthenticated, "auth check failure, please check username, password or API key")
		}
	}
	name := DefaultDatabase
	if values := md.Get("dbname"); len(values) > 0 && values[0] != "" {
		name = values[0]
	}
	return handler(context.WithValue(ctx, databaseKey{}, name), request)
}

// database returns the caller's database; the caller holds s.mu.
func (s *Server) database(ctx context.Context) (*database, error) {
	name, _ := ctx.Value(databaseKey{}).(string)
	db, ok := s.databases[name]
	if !ok {
		return nil, merr.WrapErrDatabaseNotFound(name)
	}
	return db, nil
}

func (s *Server) tick() uint64 {
	s.clock++
	return s.clock
}

func (s *Server) newID() int64 {
	s.nextID++
	return s.nextID
}

// resolve finds a collection by name or alias; the caller holds s.mu.
func (db *database) resolve(name string) (*collection, error) {
	if target, ok := db.aliases[name]; ok {
		name = target
	}
	c, ok := db.collections[name]
	if !ok {
		return nil, merr.WrapErrCollectionNotFound(name)
	}
	return c, nil
}

// do runs fn on the caller's database under the lock.
func (s *Server) do(ctx context.Context, fn func(db *database) error) *commonpb.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := s.database(ctx)
	if err == nil {
		err = fn(db)
	}
	return merr.Status(err)
}

// Connect registers a client and hands it an identifier.
func (s *Server) Connect(ctx context.Context, request *milvuspb.ConnectRequest) (*milvuspb.ConnectResponse, error) {
	response := &milvuspb.ConnectResponse{ServerInfo: &commonpb.ServerInfo{BuildTags: "milvusfake", Reserved: map[string]string{}}}
	response.Status = s.do(ctx, func(*database) error {
		response.Identifier = s.newID()
		return nil
	})
	return response, nil
}

// CreateAlias points a new alias at a collection.
func (s *Server) CreateAlias(ctx context.Context, request *milvuspb.CreateAliasRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		if err := validName(request.GetAlias(), "alias"); err != nil {
			return err
		}
		if _, ok := db.collections[request.GetCollectionName()]; !ok {
			return merr.WrapErrCollectionNotFound(request.GetCollectionName())
		}
		if _, ok := db.collections[request.GetAlias()]; ok {
			return merr.WrapErrAliasCollectionNameConflict(request.GetDbName(), request.GetAlias())
		}
		if _, ok := db.aliases[request.GetAlias()]; ok {
			return merr.WrapErrAliasAlreadyExist(request.GetDbName(), request.GetAlias())
		}
		db.aliases[request.GetAlias()] = request.GetCollectionName()
		return nil
	}), nil
}

// AlterAlias re-points an existing alias in one step.
func (s *Server) AlterAlias(ctx context.Context, request *milvuspb.AlterAliasRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		if _, ok := db.collections[request.GetCollectionName()]; !ok {
			return merr.WrapErrCollectionNotFound(request.GetCollectionName())
		}
		if _, ok := db.aliases[request.GetAlias()]; !ok {
			return merr.WrapErrAliasNotFound(request.GetDbName(), request.GetAlias())
		}
		db.aliases[request.GetAlias()] = request.GetCollectionName()
		return nil
	}), nil
}

// DescribeAlias names an alias's collection.
func (s *Server) DescribeAlias(ctx context.Context, request *milvuspb.DescribeAliasRequest) (*milvuspb.DescribeAliasResponse, error) {
	response := &milvuspb.DescribeAliasResponse{DbName: request.GetDbName(), Alias: request.GetAlias()}
	response.Status = s.do(ctx, func(db *database) error {
		target, ok := db.aliases[request.GetAlias()]
		if !ok {
			return merr.WrapErrAliasNotFound(request.GetDbName(), request.GetAlias())
		}
		response.Collection = target
		return nil
	})
	return response, nil
}

// DropAlias removes an alias; a missing alias is not an error, as in Milvus.
func (s *Server) DropAlias(ctx context.Context, request *milvuspb.DropAliasRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		delete(db.aliases, request.GetAlias())
		return nil
	}), nil
}

// ListAliases lists the aliases of one collection, or of all when none is named.
func (s *Server) ListAliases(ctx context.Context, request *milvuspb.ListAliasesRequest) (*milvuspb.ListAliasesResponse, error) {
	response := &milvuspb.ListAliasesResponse{DbName: request.GetDbName(), CollectionName: request.GetCollectionName()}
	response.Status = s.do(ctx, func(db *database) error {
		if name := request.GetCollectionName(); name != "" {
			if _, ok := db.collections[name]; !ok {
				return merr.WrapErrCollectionNotFound(name)
			}
		}
		response.Aliases = db.aliasesOf(request.GetCollectionName())
		return nil
	})
	return response, nil
}

func (db *database) aliasesOf(collection string) []string {
	var aliases []string
	for alias, target := range db.aliases {
		if collection == "" || target == collection {
			aliases = append(aliases, alias)
		}
	}
	sortStrings(aliases)
	return aliases
}

// validName applies Milvus's rules for collection and alias names.
func validName(name, what string) error {
	if name == "" {
		return merr.WrapErrParameterInvalidMsg("the %s name should not be empty", what)
	}
	if len(name) > 255 {
		return merr.WrapErrParameterInvalidMsg("the length of a %s name must be less than 255 characters", what)
	}
	for i, r := range name {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_'
		if i == 0 && !letter {
			return merr.WrapErrParameterInvalidMsg("the first character of a %s name must be an underscore or letter: %s", what, name)
		}
		if !letter && !(r >= '0' && r <= '9') {
			return merr.WrapErrParameterInvalidMsg("%s name can only contain numbers, letters and underscores: %s", what, name)
		}
	}
	return nil
}

var errNotEmulated = errors.New("not emulated by milvusfake")
