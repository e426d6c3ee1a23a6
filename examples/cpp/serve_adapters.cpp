// Serve several adapters on one base model through the C++ binding: register each adapter
// directory given on the command line, start one chat request per adapter (plus the base)
// so they decode together, and print each answer's tokens as they come.
//
//   c++ -std=c++17 serve_adapters.cpp -I include -I bindings/cpp -L target/debug -lloradock
//   ./a.out MODEL.gguf ADAPTER_DIR...
#include <iostream>
#include <string>
#include <vector>

#include "loradock.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL ADAPTER_DIR...\n";
        return 2;
    }
    try {
        loradock::RuntimeOptions o;
        o.model = argv[1];
        o.budget_bytes = 512ull << 20;
        o.allow_unverified = true;  // a real node registers each adapter with its digest
        std::vector<std::string> names;
        for (int i = 2; i < argc; i++) {
            std::string dir = argv[i];
            o.store_roots.push_back(dir + "/..");
            names.push_back(dir.substr(dir.find_last_of('/') + 1));
        }
        loradock::Runtime rt(o);
        const std::string q = "Describe the planet Mars in one sentence.";
        std::vector<std::pair<std::string, loradock::Stream>> streams;
        for (size_t i = 0; i <= names.size(); i++) {
            loradock::RequestOptions r;
            r.messages_json = R"([{"role": "user", "content": ")" + q + R"("}])";
            r.max_tokens = 40;
            std::string label = "base";
            if (i < names.size()) {
                label = names[i];
                rt.register_adapter(label, argv[2 + i]);
                r.adapters = {{label, "", "", 1.0f}};
            }
            streams.emplace_back(label, rt.submit(r));
        }
        std::cout << "Q: " << q << "\n";
        int failed = 0;
        for (auto& [label, s] : streams) {
            std::cout << "\n[" << label << "] " << std::flush;
            for (const auto& ev : s) {
                if (ev.kind == loradock::Event::Kind::Token) {
                    std::cout << ev.text << std::flush;
                } else if (ev.kind == loradock::Event::Kind::Done) {
                    std::cout << "\n  (" << ev.usage.completion_tokens << " tokens)\n";
                } else {
                    std::cout << "\n  error: " << ev.error_message << "\n";
                    failed = 1;
                }
            }
        }
        auto st = rt.stats();
        std::cout << "\ndocks " << st.docks << ", high water " << st.high_water_bytes / 1048576.0 << " MiB of "
                  << st.budget_bytes / 1048576.0 << " MiB\n";
        return failed;
    } catch (const loradock::Error& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
}
