// Known-answer test of hw/rtl/sha256.v: the FIPS 180-2 / 180-4 example messages
// ("", "abc", the 448-bit and 896-bit messages, one million 'a').
// Prints `sha256: N tests, M failures` and, per failure, `SHA256 FAIL <name> got=<digest>`.
`timescale 1ns/1ps
`default_nettype none
module tb_sha256;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg rst = 1'b1, init = 1'b0, in_valid = 1'b0, finish = 1'b0;
    reg [7:0] in_byte = 8'h00;
    wire in_ready, digest_valid;
    wire [255:0] digest;
    integer tests = 0, fails = 0, i, million;

    sha256 dut (
        .clk(clk), .rst(rst), .init(init), .in_valid(in_valid), .in_byte(in_byte),
        .in_ready(in_ready), .finish(finish), .digest_valid(digest_valid), .digest(digest)
    );

    reg [8*112-1:0] msg;

    // Hashes the first `n` bytes of `msg` (most significant byte first), or `n` bytes 'a' when
    // `as` is set, and compares with `want`.
    task run;
        input [8*16-1:0] name;
        input integer n;
        input integer nmsg;
        input as;
        input [255:0] want;
        integer k;
        begin
            @(negedge clk);
            init = 1'b1;
            @(negedge clk);
            init = 1'b0;
            for (k = 0; k < n; k = k + 1) begin
                in_valid = 1'b1;
                in_byte = as ? 8'h61 : msg[8 * (nmsg - 1 - k) +: 8];
                while (!in_ready) @(negedge clk);
                @(negedge clk);
            end
            in_valid = 1'b0;
            finish = 1'b1;
            @(negedge clk);
            finish = 1'b0;
            while (!digest_valid) @(negedge clk);
            tests = tests + 1;
            if (digest !== want) begin
                fails = fails + 1;
                $display("SHA256 FAIL %0s got=%064x", name, digest);
            end
        end
    endtask

    initial begin
        million = 1;
        if ($test$plusargs("quick")) million = 0;
        @(negedge clk);
        @(negedge clk);
        rst = 1'b0;
        msg = 0;
        run("empty", 0, 0, 0, 256'he3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855);
        msg = "abc";
        run("abc", 3, 3, 0, 256'hba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad);
        msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        run("448-bit", 56, 56, 0, 256'h248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1);
        msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        run("896-bit", 112, 112, 0, 256'hcf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1);
        // Lengths around the padding boundaries (55, 56, 63, 64, 65 bytes of 'a').
        run("a55", 55, 0, 1, 256'h9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318);
        run("a56", 56, 0, 1, 256'hb35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a);
        run("a63", 63, 0, 1, 256'h7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34);
        run("a64", 64, 0, 1, 256'hffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb);
        run("a65", 65, 0, 1, 256'h635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0);
        if (million)
            run("million-a", 1000000, 0, 1, 256'hcdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0);
        $display("sha256: %0d tests, %0d failures", tests, fails);
        $finish;
    end
endmodule
`default_nettype wire
