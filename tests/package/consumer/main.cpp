// SPDX-License-Identifier: BSL-1.0
//
// Starts a wsmanager server on an ephemeral port of 127.0.0.1, checks it reports running,
// stops it and checks it no longer does. Prints "consumer ok" and exits 0 only then.

#include <exception>
#include <iostream>

#include <asio/use_future.hpp>

#include <wsmanager/wsmanager.hpp>

int main() {
    try {
        wsmanager::Options opts;
        opts.host = "127.0.0.1";
        opts.port = 0;
        opts.threads = 1;

        wsmanager::WebSocketManager<> manager(opts);
        manager.start_server(asio::use_future).get();
        auto status = manager.get_status();
        bool const running_after_start = status.running;

        manager.stop_server(asio::use_future).get();
        bool const running_after_stop = manager.get_status().running;

        if (!running_after_start || running_after_stop) {
            std::cerr << "consumer: wrong status: running after start = " << running_after_start
                      << ", running after stop = " << running_after_stop << '\n';
            return 1;
        }
        std::cout << "consumer ok" << std::endl;
        return 0;
    } catch (std::exception const& e) {
        std::cerr << "consumer: " << e.what() << '\n';
        return 1;
    }
}
