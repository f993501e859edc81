import Foundation
import GRDB

/// A catalog that keeps an index for searches by file name, sender and subject, filled apart
/// from the commits that add transfers: a poll's commit stays as cheap as it was, and
/// ``indexForSearch(limit:)`` (the daemon and `gatepost serve` call it every few seconds) adds
/// what came since. A search is exact whatever the index holds: it narrows to the indexed
/// transfers that can match, adds every transfer not indexed yet, and decides each with
/// ``TextPattern``'s own rule.
public protocol SearchIndexing: Sendable {
    /// Indexes at most `limit` transfers not yet indexed, oldest first, in one transaction;
    /// returns how many (0: the index is complete).
    func indexForSearch(limit: Int) async throws -> Int
}

extension SQLiteCatalog: SearchIndexing {
    public func indexForSearch(limit: Int) async throws -> Int {
        try await database.write { db in try SearchIndex.indexNext(limit: limit, db) }
    }
}

/// The SQLite search index: an FTS5 table with the trigram tokenizer (any substring of three
/// characters or more is found from the index, without case for ASCII), contentless (it holds
/// the trigrams, not a copy of the text), keyed by the transfer's rowid; and how far it goes.
///
/// Exactness: the index is only a filter, and a generous one. The trigram tokenizer folds case
/// by simple per-character rules, TextPattern by Unicode's full ones (`ß` is `SS`, `ﬁ` is `fi`),
/// so a transfer whose file name, sender or subject is not all ASCII is marked and always a
/// candidate; literals that are not ASCII, or shorter than a trigram, are not looked up. The
/// rowid is the table's own (it has no INTEGER PRIMARY KEY): only a VACUUM could renumber it,
/// and Gatepost never runs one (`catalog backup` copies pages, rowids with them).
enum SearchIndex {
    /// The most candidates the index may give before a search scans instead: a search for a
    /// common text ("csv") is fastest as a scan that stops at its page's last row, newest
    /// first; one for a rare text from the few rows the index names.
    static let candidateLimit = 1000

    static let table = "transfer_search"
    static let nonASCIIMark = "nonascii"

    static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE VIRTUAL TABLE \(table) USING fts5(fileName, sender, subject, marks, content='', tokenize='trigram');
            CREATE TABLE search_index_state (id INTEGER PRIMARY KEY CHECK (id = 1), indexedUpTo INTEGER NOT NULL);
            INSERT INTO search_index_state (id, indexedUpTo) VALUES (1, 0);
            -- A transfer already indexed whose texts change is indexed again, in the same
            -- transaction (a contentless table forgets a row by being given its old values).
            CREATE TRIGGER transfer_search_texts AFTER UPDATE OF fileName, sender, subject ON transfer
            WHEN (old.fileName IS NOT new.fileName OR old.sender IS NOT new.sender OR old.subject IS NOT new.subject)
              AND old.rowid <= (SELECT indexedUpTo FROM search_index_state WHERE id = 1)
            BEGIN
              INSERT INTO \(table) (\(table), rowid, fileName, sender, subject, marks)
                VALUES ('delete', old.rowid, old.fileName, old.sender, old.subject, \(marks("old")));
              INSERT INTO \(table) (rowid, fileName, sender, subject, marks)
                VALUES (new.rowid, new.fileName, new.sender, new.subject, \(marks("new")));
            END;
            """)
    }

    /// The marks column of a row: ``nonASCIIMark`` when a text is not all ASCII (its bytes
    /// outnumber its characters; SQLite's length() stops at a NUL, which marks it too).
    static func marks(_ row: String) -> String {
        let texts = "coalesce(\(row).fileName, '') || coalesce(\(row).sender, '') || coalesce(\(row).subject, '')"
        return "CASE WHEN length(CAST(\(texts) AS BLOB)) = length(\(texts)) THEN '' ELSE '\(nonASCIIMark)' END"
    }

    static func indexedUpTo(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT indexedUpTo FROM search_index_state WHERE id = 1") ?? 0
    }

    static func indexNext(limit: Int, _ db: Database) throws -> Int {
        let from = try indexedUpTo(db)
        guard let last = try Int64.fetchOne(
            db, sql: "SELECT max(rowid) FROM (SELECT rowid FROM transfer WHERE rowid > ? ORDER BY rowid LIMIT ?)", arguments: [from, limit]
        ) else { return 0 }
        try db.execute(
            sql: """
                INSERT INTO \(table) (rowid, fileName, sender, subject, marks)
                SELECT rowid, fileName, sender, subject, \(marks("transfer")) FROM transfer WHERE rowid > ? AND rowid <= ?
                """,
            arguments: [from, last]
        )
        let indexed = db.changesCount
        try db.execute(sql: "UPDATE search_index_state SET indexedUpTo = ? WHERE id = 1", arguments: [last])
        return indexed
    }

    /// The rows that can match `filter`'s text patterns, as a condition on the rowid; nil when
    /// the index cannot narrow the search (no literal it can look up, or too many candidates).
    static func candidates(for filter: TransferFilter, _ db: Database) throws -> SQLExpression? {
        var terms: [String] = []
        for (columns, pattern) in [("fileName", filter.fileName), ("sender", filter.sender), ("subject", filter.subject),
                                   ("fileName sender subject", filter.anyText)] {
            for literal in pattern?.requiredLiterals ?? [] where literal.utf8.count >= 3 && literal.utf8.allSatisfy({ $0 < 0x80 }) {
                terms.append("{\(columns)} : \"\(literal.replacingOccurrences(of: "\"", with: "\"\""))\"")
            }
        }
        guard !terms.isEmpty else { return nil }
        let query = "(\(terms.joined(separator: " AND "))) OR marks : \(nonASCIIMark)"
        let rowids = try Int64.fetchAll(
            db, sql: "SELECT rowid FROM \(table) WHERE \(table) MATCH ? LIMIT ?", arguments: [query, candidateLimit + 1]
        )
        guard rowids.count <= candidateLimit else { return nil }
        let notIndexed = Column.rowID > (try indexedUpTo(db))
        // An empty IN list would keep SQLite from reading only the rows not indexed.
        return rowids.isEmpty ? notIndexed : rowids.contains(Column.rowID) || notIndexed
    }
}
