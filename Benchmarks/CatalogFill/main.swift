import Foundation
import GatepostCatalog

// Fills a catalog with COUNT transfers over SITES sites, for Benchmarks/console.sh: file names,
// senders and subjects of the shapes operators search for, newest at the end, a few per second
// over the last days.
//
//   gatepost-catalog-fill PATH [COUNT] [SITES]

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: gatepost-catalog-fill PATH [COUNT] [SITES]\n".utf8))
    exit(2)
}
let count = arguments.count > 2 ? Int(arguments[2]) ?? 100_000 : 100_000
let siteCount = arguments.count > 3 ? Int(arguments[3]) ?? 20 : 20
let catalog = try SQLiteCatalog(path: arguments[1])
let start = Date().addingTimeInterval(-Double(count) * 3)
var generator = SystemRandomNumberGenerator()
let kinds = ["INV", "ORD", "DESADV", "PRICAT", "REMADV"]
var batch: [ReceivedTransfer] = []
for index in 0..<count {
    let site = "partner\(index % siteCount)"
    let kind = kinds[index % kinds.count]
    let type: TransferRecord.Kind = index % 10 == 9 ? .msg : (index % 50 == 49 ? .eerp : .xfer)
    let fileName = type == .xfer ? (index % 97 == 0 ? TransferRecord.recoverFileName : "\(kind)-\(2026_000_000 + index).csv") : (type == .msg ? "orders" : nil)
    let record = TransferRecord(
        id: String(format: "T%013d-%08x", 1_760_000_000_000 + index * 3000, UInt32.random(in: 0...UInt32.max, using: &generator)),
        type: type, fileName: fileName, site: site, state: index % 13 == 0 ? .failed : .delivered,
        messageId: "m\(index)@\(site).example", sender: "edi\(index % 7)@\(site).example", recipients: ["gateway@ours.example"],
        subject: "\(kind) batch \(index / 100) for \(site)", size: Int64(1000 + index % 50_000), sha256: String(repeating: "a", count: 64),
        path: "/spool/in/\(site)/T\(index)", receivedAt: start.addingTimeInterval(Double(index) * 3),
        classification: "one attached file"
    )
    batch.append(ReceivedTransfer(record: record, uidl: "u\(index)"))
    if batch.count == 2000 {
        try await catalog.commitReceived(batch)
        batch = []
    }
}
if !batch.isEmpty { try await catalog.commitReceived(batch) }
// The daemon indexes transfers for searches a few seconds after they arrive; over the days
// these stand for, it would have indexed them all.
var indexed = 0
while case let added = try await catalog.indexForSearch(limit: 10_000), added > 0 { indexed += added }
print("filled \(arguments[1]) with \(count) transfers over \(siteCount) sites, \(indexed) indexed for searches")
