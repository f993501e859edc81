// swift-tools-version: 6.1
import PackageDescription

let strictness: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Gatepost",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gatepost", targets: ["gatepost"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // The console: HTTP server, sessions and bcrypt, Prometheus metrics. Hummingbird without
        // its swift-configuration trait (not used: settings come from site files and options).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The PostgreSQL catalog (GatepostPostgres): the wire protocol and a connection pool.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // Bytes in, structure out: no sockets, no files, no database.
        .target(
            name: "GatepostMIME",
            swiftSettings: strictness
        ),
        // What the protocol clients share on the wire: security modes, SASL and the choice of a
        // mechanism, the server-silence timeout, TLS settings and the wording of connection failures.
        .target(
            name: "GatepostWire",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictness
        ),
        // POP3 wire protocol: a pure parser/state machine plus a thin NIO transport.
        .target(
            name: "GatepostPOP3",
            dependencies: [
                "GatepostWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strictness
        ),
        // SMTP client: a pure reply parser, state machine and DATA encoder plus a thin NIO transport.
        .target(
            name: "GatepostSMTP",
            dependencies: [
                "GatepostWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictness
        ),
        // OpenSSL's libcrypto (Debian's libssl-dev), for CMS: the project's one system library.
        .systemLibrary(name: "COpenSSL", providers: [.apt(["libssl-dev"])]),
        // S/MIME's CMS operations (decrypt, verify, sign, encrypt), streaming from file to file.
        // The only module that touches OpenSSL; BoringSSL (in swift-nio-ssl) has no CMS.
        .target(
            name: "GatepostSMIME",
            dependencies: ["COpenSSL"],
            swiftSettings: strictness
        ),
        // Transfer records, committed UIDLs and site state in SQLite.
        .target(
            name: "GatepostCatalog",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictness
        ),
        // The catalog contract on PostgreSQL, for several nodes sharing one catalog.
        .target(
            name: "GatepostPostgres",
            dependencies: [
                "GatepostCatalog",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // For ConnectionPoolError, which PostgresClient throws as it is.
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictness
        ),
        // Linux system calls the Glibc module does not export (sync_file_range).
        .target(name: "CGatepostSystem"),
        // Sites, spool, classification policy and the poll job.
        .target(
            name: "GatepostCore",
            dependencies: [
                "GatepostMIME", "GatepostPOP3", "GatepostCatalog", "GatepostSMTP", "GatepostWire", "GatepostSMIME", "CGatepostSystem",
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictness
        ),
        // The operator's console: REST API, server-rendered HTML, metrics, users and roles. HTTP
        // only: it calls Core's operations and the catalog, never a protocol module.
        .target(
            name: "GatepostConsole",
            dependencies: [
                "GatepostCore", "GatepostCatalog", "GatepostWire",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictness
        ),
        // Scripted in-process servers (fault injection, demo) and real test-peer launchers.
        .target(
            name: "GatepostTestSupport",
            dependencies: [
                "GatepostCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictness
        ),
        .executableTarget(
            name: "gatepost",
            dependencies: [
                "GatepostCore", "GatepostCatalog", "GatepostMIME", "GatepostTestSupport", "GatepostConsole", "GatepostPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        // Parse + decode + hash throughput (Benchmarks/README.md); not a test, run by hand.
        .executableTarget(
            name: "gatepost-mime-benchmark",
            dependencies: ["GatepostMIME", .product(name: "Crypto", package: "swift-crypto")],
            path: "Benchmarks/MIMEThroughput",
            swiftSettings: strictness
        ),
        // Fills a catalog with many transfers for Benchmarks/console.sh; not a test, run by hand.
        .executableTarget(
            name: "gatepost-catalog-fill",
            dependencies: ["GatepostCatalog"],
            path: "Benchmarks/CatalogFill",
            swiftSettings: strictness
        ),
        // libFuzzer target over the MIME parser (scripts/fuzz); a replay tool in normal builds.
        .executableTarget(
            name: "gatepost-mime-fuzzer",
            dependencies: ["GatepostMIME"],
            path: "Fuzz/MIMEParserFuzzer",
            swiftSettings: strictness
        ),
        .testTarget(name: "GatepostMIMETests", dependencies: ["GatepostMIME"], exclude: ["Corpus"], swiftSettings: strictness),
        .testTarget(
            name: "GatepostPOP3Tests",
            dependencies: [
                "GatepostPOP3", "GatepostWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostSMTPTests",
            dependencies: [
                "GatepostSMTP", "GatepostWire", "GatepostTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostSMIMETests",
            dependencies: ["GatepostSMIME", "GatepostTestSupport"],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostWireTests",
            dependencies: ["GatepostWire", .product(name: "NIOEmbedded", package: "swift-nio")],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostCatalogTests",
            dependencies: ["GatepostCatalog", "GatepostPostgres", "GatepostTestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostPostgresTests",
            dependencies: ["GatepostPostgres", "GatepostCatalog", "GatepostTestSupport"],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostCoreTests",
            dependencies: [
                "GatepostCore", "GatepostCatalog", "GatepostPOP3", "GatepostSMIME", "GatepostTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostTestSupportTests",
            dependencies: ["GatepostTestSupport", "GatepostPOP3", "GatepostWire"],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostConsoleTests",
            dependencies: [
                "GatepostConsole", "GatepostCore", "GatepostCatalog",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictness
        ),
        .testTarget(
            name: "GatepostIntegrationTests",
            dependencies: ["GatepostCore", "GatepostCatalog", "GatepostTestSupport", "GatepostConsole", "GatepostPostgres"],
            swiftSettings: strictness
        ),
    ]
)
