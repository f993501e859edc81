import Foundation
import Testing
@testable import GatepostCatalog

/// Finding transfers: the filters the command line, the API and the console share, and paging
/// by cursor; the same answers from every store.
@Suite struct TransferSearchTests {
    /// Ten transfers, a second apart, of two sites; the file names, senders and subjects vary.
    func stocked(_ store: CatalogStore) async throws -> any Catalog {
        let catalog = try await store.make()
        let names = ["INV-001.csv", "inv-002.CSV", "orders.xml", "RECOVER", "DUPLICATE", "INV-003.csv", "notes.txt", "RECOVERY.csv", "a.pdf", "INV-004.csv"]
        for (index, name) in names.enumerated() {
            var record = F.inbound("T\(index)", site: index % 2 == 0 ? "acme" : "bcorp", at: TimeInterval(index))
            record.fileName = name
            record.sender = index < 5 ? "edi@acme.example" : "Ops <ops@bcorp.example>"
            record.subject = "Invoice batch \(index)"
            try await catalog.commitReceived(record, uidl: "u\(index)")
        }
        var outbound = F.outbound("T10")
        outbound.receivedAt = F.epoch.addingTimeInterval(10)
        try await catalog.commitOutbound(outbound, message: F.entry("T10"))
        return catalog
    }

    func ids(_ catalog: any Catalog, _ filter: TransferFilter) async throws -> [String] {
        try await catalog.transfers(filter).map(\.id)
    }

    @Test(arguments: CatalogStore.allCases)
    func patternsAreGlobsOrSubstringsWithoutCase(_ store: CatalogStore) async throws {
        let catalog = try await stocked(store)
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("inv-*.csv"))) == ["T0", "T1", "T5", "T9"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("INV-00[3-9]*"))) == ["T5", "T9"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("recover"))) == ["T3", "T7"], "a substring")
        #expect(try await ids(catalog, TransferFilter(fileName: .exactly("recover"))) == ["T3"])
        #expect(try await ids(catalog, TransferFilter(sender: TextPattern("BCORP"))) == ["T5", "T6", "T7", "T8", "T9"])
        #expect(try await ids(catalog, TransferFilter(subject: TextPattern("*batch 1"))) == ["T1"])
        // acme has T0 (INV-001.csv), T2 (xml), T4 (DUPLICATE), T6 (txt), T8 (pdf), T10 (a.csv, out).
        #expect(try await ids(catalog, TransferFilter(site: "acme", fileName: TextPattern("csv"))) == ["T0", "T10"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("%"))).isEmpty, "SQL's wildcards are literals")
        var anyText = TransferFilter()
        anyText.anyText = TextPattern("xml")
        #expect(try await ids(catalog, anyText) == ["T2"], "the file name")
        anyText.anyText = TextPattern("ops@")
        #expect(try await ids(catalog, anyText) == ["T5", "T6", "T7", "T8", "T9"], "the sender")
        anyText.anyText = TextPattern("batch 4")
        #expect(try await ids(catalog, anyText) == ["T4"], "the subject")
    }

    @Test(arguments: CatalogStore.allCases)
    func inboundTransfersAreCountedPerSiteSinceAnInstant(_ store: CatalogStore) async throws {
        let catalog = try await stocked(store)
        #expect(try await catalog.inboundCounts(since: F.epoch) == ["acme": 5, "bcorp": 5], "the outbound T10 is not counted")
        #expect(try await catalog.inboundCounts(since: F.epoch.addingTimeInterval(8)) == ["acme": 1, "bcorp": 1])
        #expect(try await catalog.inboundCounts(since: F.epoch.addingTimeInterval(60)).isEmpty)
    }

    @Test(arguments: CatalogStore.allCases)
    func searchesOverNonASCIIValuesAgreeInEveryStore(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        for (index, name) in ["Übersicht-INV.csv", "inv.csv", "ÜBERSICHT.txt", "straße.csv", nil].enumerated() {
            var record = F.inbound("T\(index)", at: TimeInterval(index))
            record.fileName = name
            try await catalog.commitReceived(record, uidl: "u\(index)")
        }
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("INV"))) == ["T0", "T1"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("übersicht"))) == ["T0", "T2"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("STRASSE"))) == ["T3"], "Unicode case folding: ß is SS")
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("ß"))) == ["T3"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern(".csv"))) == ["T0", "T1", "T3"])
    }

    @Test(arguments: CatalogStore.allCases)
    func likesWildcardsAndEscapeAreLiteralsInASearch(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        for (index, name) in ["INV_1.csv", "INVX1.csv", "50%.csv", "a\\b.csv", "ab.csv"].enumerated() {
            var record = F.inbound("T\(index)", at: TimeInterval(index))
            record.fileName = name
            try await catalog.commitReceived(record, uidl: "u\(index)")
        }
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("v_1"))) == ["T0"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("0%"))) == ["T2"])
        #expect(try await ids(catalog, TransferFilter(fileName: TextPattern("a\\b"))) == ["T3"])
        #expect(try await ids(catalog, TransferFilter(fileName: .exactly("ab.CSV"))) == ["T4"])
        #expect(try await ids(catalog, TransferFilter(fileName: .exactly("ab"))) == [])
    }

    @Test func asciiAndUnicodeSearchesAgree() {
        for (value, pattern, expected) in [
            ("INV-001.csv", "inv-0", true), ("INV-001.csv", "CSVX", false), ("Übersicht.csv", "übersicht", true),
            ("Übersicht.csv", "UBERSICHT", false), ("a", "ab", false), ("", "a", false), ("orders", "ORDERS", true),
        ] {
            #expect(TextPattern(pattern).matches(value) == expected, "\(value) ~ \(pattern)")
        }
        #expect(TextPattern.exactly("recover").matches("RECOVER"))
        #expect(!TextPattern.exactly("recover").matches("RECOVERY"))
        #expect(TextPattern.exactly("größe").matches("GRÖSSE") == ("größe".compare("GRÖSSE", options: .caseInsensitive) == .orderedSame))
    }

    @Test(arguments: CatalogStore.allCases)
    func keptWholeAndDirectionNarrow(_ store: CatalogStore) async throws {
        let catalog = try await stocked(store)
        #expect(try await ids(catalog, TransferFilter(keptWhole: true)) == ["T3", "T4"])
        #expect(try await ids(catalog, TransferFilter(type: .xfer, keptWhole: false)).count == 9, "RECOVERY.csv is a file")
        #expect(try await ids(catalog, TransferFilter(direction: .outbound)) == ["T10"])
        #expect(try await ids(catalog, TransferFilter(direction: .inbound)).count == 10)
    }

    @Test(arguments: CatalogStore.allCases)
    func pagesFollowEachOtherByCursorNewestFirstOrOldest(_ store: CatalogStore) async throws {
        let catalog = try await stocked(store)
        for newestFirst in [true, false] {
            var filter = TransferFilter(limit: 4, direction: .inbound, newestFirst: newestFirst)
            var seen: [String] = []
            while true {
                let page = try await catalog.transfers(filter)
                seen += page.map(\.id)
                guard page.count == 4, let last = page.last else { break }
                // Through its text, as a URL carries it.
                filter.after = TransferCursor(text: TransferCursor(after: last).text)
            }
            let all = (0..<10).map { "T\($0)" }
            #expect(seen == (newestFirst ? all.reversed() : all), "newest first: \(newestFirst)")
        }
    }

    @Test func aCursorRoundTripsItsTextAndRefusesJunk() {
        let cursor = TransferCursor(receivedAt: Date(timeIntervalSince1970: 1_764_291_723.123_456), id: "T1764291723123-0a1b2c3d")
        #expect(TransferCursor(text: cursor.text) == cursor)
        for junk in ["", "x", "12", "_T1", "nan_T1", "12_", "12_" + String(repeating: "x", count: 65)] {
            #expect(TransferCursor(text: junk) == nil, "\(junk)")
        }
    }

    @Test(arguments: CatalogStore.allCases)
    func operatorActionsAreKeptNewestFirstBySiteAndTransfer(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        try await catalog.recordOperatorAction(OperatorAction(at: F.epoch, actor: "alice", action: "site.disable", site: "acme"))
        try await catalog.recordOperatorAction(OperatorAction(at: F.epoch, actor: "token:ci", action: "transfer.retry", site: "acme", transferId: "T1"))
        try await catalog.recordOperatorAction(OperatorAction(at: F.epoch, actor: "cli:root", action: "site.enable", site: "bcorp", detail: "why not"))
        let all = try await catalog.operatorActions(site: nil, transferId: nil, limit: 10)
        #expect(all.map(\.action) == ["site.enable", "transfer.retry", "site.disable"])
        #expect(all.map(\.id) == all.map(\.id).sorted(by: >))
        #expect(all.first?.detail == "why not")
        #expect(all.first?.at == F.epoch)
        #expect(try await catalog.operatorActions(site: "acme", transferId: nil, limit: 10).map(\.actor) == ["token:ci", "alice"])
        #expect(try await catalog.operatorActions(site: nil, transferId: "T1", limit: 10).map(\.actor) == ["token:ci"])
        #expect(try await catalog.operatorActions(site: nil, transferId: nil, limit: 1).count == 1)
    }
}
