import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A listening socket on a free port of 127.0.0.1: what the scripted servers share.
final class LoopbackListener: Sendable {
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    /// Listens and returns the port; `configure` sets up each accepted connection's pipeline.
    func start(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        configure: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try configure(channel) }
            }
        let serverChannel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        channel.withLockedValue { $0 = serverChannel }
        guard let port = serverChannel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return port
    }

    func stop() async {
        let serverChannel = channel.withLockedValue { channel in
            defer { channel = nil }
            return channel
        }
        try? await serverChannel?.close()
    }
}
