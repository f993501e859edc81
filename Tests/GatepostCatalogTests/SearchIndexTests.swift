import Foundation
import GRDB
import GatepostTestSupport
import Testing
@testable import GatepostCatalog

/// The SQLite catalog's search index narrows searches and never changes their answers: the
/// same as the in-memory catalog's, which scans, whether the index holds nothing, part or all.
@Suite struct SearchIndexTests {
    @Test func literalsAreWhatEveryMatchContains() {
        #expect(TextPattern("INV-0").requiredLiterals == ["INV-0"])
        #expect(TextPattern.exactly("a.csv").requiredLiterals == ["a.csv"])
        #expect(TextPattern("").requiredLiterals == [])
        #expect(TextPattern("INV-*.csv").requiredLiterals == ["INV-", ".csv"])
        #expect(TextPattern("ab?cd[0-9]ef").requiredLiterals == ["ab", "cd", "ef"])
        #expect(TextPattern("x[!]a]yz").requiredLiterals == ["x", "yz"], "a ] first in a set is a member")
        #expect(TextPattern("a\\*b*").requiredLiterals == ["a*b"], "an escaped * is a literal")
        #expect(TextPattern("ab[cd").requiredLiterals == ["ab", "cd"], "an unclosed [ only ends a run")
    }

    /// For globs made of literals, wildcards and sets, and texts over the same letters: every
    /// text a glob matches contains each of its literals, without case.
    @Test func aGlobsMatchesHoldItsLiterals() {
        var random = SplitMix64(state: 17)
        let pieces = ["a", "B", "c", "*", "?", "[ab]", "[!c]", "[]a]", "\\*", "[a-c]", "[", "ä", "-"]
        let letters = ["a", "b", "c", "A", "*", "]", "[", "ä", "Ä", "-"]
        for _ in 0..<20_000 {
            let pattern = (0..<Int.random(in: 0..<7, using: &random)).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &random)] }.joined()
            let text = (0..<Int.random(in: 0..<8, using: &random)).map { _ in letters[Int.random(in: 0..<letters.count, using: &random)] }.joined()
            guard Glob.matches(pattern, text) else { continue }
            for literal in TextPattern(pattern).requiredLiterals where TextPattern(pattern).kind == .glob {
                #expect(text.lowercased().contains(literal.lowercased()), "\(pattern) matches \(text) without \(literal)")
            }
        }
    }

    static let names: [String?] = [
        "INV-001.csv", "inv-002.CSV", "orders.xml", "RECOVER", "Übersicht-INV.csv", "straße.csv", "ﬁle.csv", "\u{212A}elvin.txt",
        "say \"hi\".txt", "50%_off.csv", "a\\b.csv", nil, "INV-003.csv", "ÜBERSICHT.txt", "x", "desadv-INV-9.edi",
    ]
    static let patterns: [TextPattern] = [
        "inv", "INV-00", "csv", ".csv", "inv-*.csv", "*sicht*", "übersicht", "STRASSE", "file", "kelvin", "\"hi\"", "50%_",
        "a\\b", "a\\\\b*", "*[0-9].csv", "DESADV", "xyz", "x", "er", "batch 1", "edi@", "OPS@BCORP", "*@acme.example",
    ].map(TextPattern.init) + [.exactly("recover"), .exactly("INV-001.CSV"), .exactly("ops <ops@bcorp.example>")]

    func stock(_ catalog: any Catalog, indexAfter: Int?) async throws {
        for (index, name) in Self.names.enumerated() {
            var record = F.inbound("T\(index)", site: index % 2 == 0 ? "acme" : "bcorp", at: TimeInterval(index))
            record.fileName = name
            record.sender = index % 3 == 0 ? "edi@acme.example" : (index % 3 == 1 ? "Ops <ops@bcorp.example>" : "Jörg <jörg@bcorp.example>")
            record.subject = index % 4 == 0 ? nil : "Invoice batch \(index)"
            try await catalog.commitReceived(record, uidl: "u\(index)")
            if index + 1 == indexAfter, let indexing = catalog as? any SearchIndexing {
                _ = try await indexing.indexForSearch(limit: 1000)
            }
        }
    }

    @Test(arguments: [0, 5, 16])
    func searchesAnswerAsAScanDoes(indexed: Int) async throws {
        let reference = InMemoryCatalog()
        try await stock(reference, indexAfter: nil)
        let catalog = try await CatalogStore.sqlite.make()
        try await stock(catalog, indexAfter: indexed)
        for pattern in Self.patterns {
            for filter in [TransferFilter(fileName: pattern), TransferFilter(sender: pattern), TransferFilter(subject: pattern),
                           { var any = TransferFilter(newestFirst: true); any.anyText = pattern; return any }(),
                           { var both = TransferFilter(site: "acme", fileName: pattern); both.anyText = TextPattern("csv"); return both }()] {
                let expected = try await reference.transfers(filter).map(\.id)
                #expect(try await catalog.transfers(filter).map(\.id) == expected, "\(filter), \(indexed) indexed")
            }
        }
    }

    /// PostgreSQL has no index: SQL narrows (ILIKE on ASCII values) and TextPattern decides,
    /// with the same answers as the scan, in either order and with a limit.
    @Test func postgresSearchesAnswerAsAScanDoes() async throws {
        let reference = InMemoryCatalog()
        try await stock(reference, indexAfter: nil)
        let catalog = try await CatalogStore.postgres.make()
        try await stock(catalog, indexAfter: nil)
        for pattern in Self.patterns {
            for filter in [TransferFilter(fileName: pattern), TransferFilter(sender: pattern), TransferFilter(subject: pattern),
                           TransferFilter(limit: 2, fileName: pattern, newestFirst: true),
                           { var any = TransferFilter(newestFirst: true); any.anyText = pattern; return any }(),
                           { var both = TransferFilter(site: "acme", fileName: pattern); both.anyText = TextPattern("csv"); return both }()] {
                let expected = try await reference.transfers(filter).map(\.id)
                #expect(try await catalog.transfers(filter).map(\.id) == expected, "\(filter)")
            }
        }
    }

    @Test func theIndexCatchesUpInBatchesAndThenHasNothingToDo() async throws {
        let catalog = try #require(try await CatalogStore.sqlite.make() as? SQLiteCatalog)
        try await stock(catalog, indexAfter: nil)
        #expect(try await catalog.indexForSearch(limit: 10) == 10)
        #expect(try await catalog.indexForSearch(limit: 10) == Self.names.count - 10)
        #expect(try await catalog.indexForSearch(limit: 10) == 0)
    }

    @Test func aTransferWhoseTextsChangeIsFoundByItsNewTextsOnly() async throws {
        let catalog = try #require(try await CatalogStore.sqlite.make() as? SQLiteCatalog)
        try await stock(catalog, indexAfter: Self.names.count)
        var record = try #require(try await catalog.transfer(id: "T0"))
        record.fileName = "PRICAT-7.csv"
        record.subject = "renamed"
        let renamed = record
        try await catalog.database.write { db in try StoredTransfer(renamed).update(db) }
        #expect(try await catalog.transfers(TransferFilter(fileName: TextPattern("pricat"))).map(\.id) == ["T0"])
        #expect(try await catalog.transfers(TransferFilter(fileName: TextPattern("INV-001"))).isEmpty)
        #expect(try await catalog.transfers(TransferFilter(subject: TextPattern("renamed"))).map(\.id) == ["T0"])
        #expect(try catalog.integrityCheck() == "ok")
    }

    /// Past the candidate limit the index is not used: the scan answers, the same.
    @Test func aCommonTextIsSearchedByScanning() async throws {
        let catalog = try #require(try await CatalogStore.sqlite.make() as? SQLiteCatalog)
        let batch = (0..<(SearchIndex.candidateLimit + 10)).map { index in
            var record = F.inbound("T\(index)", at: TimeInterval(index))
            record.fileName = "INV-\(index).csv"
            return ReceivedTransfer(record: record, uidl: "u\(index)")
        }
        try await catalog.commitReceived(batch)
        #expect(try await catalog.indexForSearch(limit: 100_000) == batch.count)
        let common = try await catalog.database.read { db in try SearchIndex.candidates(for: TransferFilter(fileName: TextPattern("csv")), db) }
        #expect(common == nil)
        let rare = try await catalog.database.read { db in try SearchIndex.candidates(for: TransferFilter(fileName: TextPattern("INV-500.")), db) }
        #expect(rare != nil, "a rare text is looked up in the index")
        #expect(try await catalog.transfers(TransferFilter(limit: 3, fileName: TextPattern("csv"), newestFirst: true)).count == 3)
        #expect(try await catalog.transfers(TransferFilter(fileName: TextPattern("INV-500."))).map(\.id) == ["T500"])
    }
}
