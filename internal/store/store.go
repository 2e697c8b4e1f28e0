// Package store owns Keystone's SQL: every query against PostgreSQL lives here.
// Other packages ask for what they need through the methods of Queries, bound
// either to the pool or to one transaction.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned when a row asked for does not exist. Callers compare
// with errors.Is; pgx's own not-found never leaves this package.
var ErrNotFound = errors.New("not found")

// DBTX is what Queries needs: satisfied by *pgxpool.Pool, *pgxpool.Conn and pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is the database: a pgx pool and the queries over it.
type Store struct {
	pool *pgxpool.Pool
	*Queries
}

// Queries runs Keystone's SQL against a pool or a transaction.
type Queries struct{ db DBTX }

// NewQueries binds the queries to db (typically a pgx.Tx).
func NewQueries(db DBTX) *Queries { return &Queries{db: db} }

// Option adjusts the connection pool of Open.
type Option func(*pgxpool.Config)

// MinConns makes the pool hold at least n connections. Every running deploy
// job holds one for its app lock for as long as it runs, and needs another
// to work: size the pool from the number of workers, or jobs starve.
func MinConns(n int32) Option {
	return func(c *pgxpool.Config) {
		if c.MaxConns < n {
			c.MaxConns = n
		}
	}
}

// Open connects to url, checks the connection and returns the store. It does
// not migrate: call Migrate.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL with its password: keep only the gist.
		return nil, fmt.Errorf("parse DATABASE_URL: %s", redactURLError(err))
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8 // webhook acks, workers holding app locks, pages
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s := &Store{pool: pool, Queries: NewQueries(pool)}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool is the underlying pool, for the job queue's driver.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close releases every connection.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// InTx runs fn in one transaction, committed if fn returns nil and rolled back
// otherwise. The transaction is handed over for callers that also enqueue jobs
// in it.
func (s *Store) InTx(ctx context.Context, fn func(tx pgx.Tx, q *Queries) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after commit
	if err := fn(tx, NewQueries(tx)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// notFound turns pgx's no-rows into ErrNotFound, wrapping with what was asked.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// noNUL removes NUL characters, which PostgreSQL text cannot hold; everything
// else a webhook carries is valid UTF-8 after JSON decoding.
func noNUL(s string) string { return strings.ReplaceAll(s, "\x00", "") }

func redactURLError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return "invalid connection string"
	}
	return msg
}
