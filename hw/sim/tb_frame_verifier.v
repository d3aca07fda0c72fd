// Testbench of hw/rtl/frame_verifier.v over a vector file (hw/FRAMES.md, "Test vectors"):
// `vvp tb +vectors=FILE`. Each vector's bytes are streamed into the verifier (honouring
// `in_ready`), the frame is ended with `in_last`, and the verifier's `reason` is compared with
// the vector's expected code. Prints `DISAGREE id=<id> expected=<e> got=<g>` per disagreement,
// then `<N> vectors, <M> disagreements`; `ERROR ...` and exit status 1 (via $fatal) when the file
// cannot be opened or a line does not follow the format exactly (a byte count that does not
// match the bytes on the line is an error, not a silent misreading).
`timescale 1ns/1ps
`default_nettype none
module tb_frame_verifier;
    reg clk = 1'b0;
    always #5 clk = ~clk;

    reg       rst = 1'b1;
    reg       in_valid = 1'b0, in_last = 1'b0;
    reg [7:0] in_data = 8'h00;
    wire      in_ready, done;
    wire [3:0] reason;

    frame_verifier dut (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_data(in_data), .in_last(in_last),
        .in_ready(in_ready), .done(done), .reason(reason)
    );

    reg [8*4096-1:0] path;
    integer fd, ch, id, code, count, i, hi, lo, n, m, line;
    reg ok;

    // The value of a hex digit, or -1.
    function integer hexval;
        input integer c;
        begin
            if (c >= "0" && c <= "9") hexval = c - "0";
            else if (c >= "a" && c <= "f") hexval = c - "a" + 10;
            else if (c >= "A" && c <= "F") hexval = c - "A" + 10;
            else hexval = -1;
        end
    endfunction

    // Reads a decimal number that starts with `ch` and ends at a space, a line end or the end of
    // the file (left in `ch`); clears `ok` when there is none.
    task read_dec;
        output integer v;
        begin
            v = 0;
            if (ch < "0" || ch > "9") ok = 1'b0;
            while (ok && ch >= "0" && ch <= "9") begin
                v = v * 10 + (ch - "0");
                ch = $fgetc(fd);
            end
            if (ch != " " && ch != 10 && ch != 13 && ch != -1) ok = 1'b0;
        end
    endtask

    task bad_line;
        input [8*64-1:0] what;
        begin
            $display("ERROR %0s line %0d: %0s", path, line, what);
            $fatal(1);
        end
    endtask

    initial begin
        if (!$value$plusargs("vectors=%s", path)) begin
            $display("ERROR usage: vvp tb_frame_verifier +vectors=FILE");
            $fatal(1);
        end
        fd = $fopen(path, "r");
        if (fd == 0) begin
            $display("ERROR cannot open %0s", path);
            $fatal(1);
        end
        n = 0;
        m = 0;
        line = 1;
        @(negedge clk);
        @(negedge clk);
        rst = 1'b0;
        ch = $fgetc(fd);
        while (ch != -1) begin
            if (ch == "#") begin
                // A comment: skip to the end of the line.
                while (ch != -1 && ch != 10) ch = $fgetc(fd);
            end else if (ch == 10) begin
                line = line + 1;
                ch = $fgetc(fd);
            end else if (ch == 13) begin
                ch = $fgetc(fd);
            end else begin
                // `<id> <code> <count>` then `count` times ` <hex><hex>`, then the line end.
                ok = 1'b1;
                read_dec(id);
                if (ok && ch == " ") ch = $fgetc(fd); else ok = 1'b0;
                if (ok) read_dec(code);
                if (ok && ch == " ") ch = $fgetc(fd); else ok = 1'b0;
                if (ok) read_dec(count);
                if (!ok || code > 15) bad_line("not <id> <code 0..15> <count>");
                for (i = 0; i < count; i = i + 1) begin
                    if (ch != " ") bad_line("fewer bytes than its count");
                    hi = hexval($fgetc(fd));
                    lo = hexval($fgetc(fd));
                    if (hi < 0 || lo < 0) bad_line("a byte that is not two hex digits");
                    ch = $fgetc(fd);
                    in_valid = 1'b1;
                    in_data = hi * 16 + lo;
                    in_last = (i == count - 1);
                    while (!in_ready) @(negedge clk);
                    @(negedge clk);
                end
                if (ch == 13) ch = $fgetc(fd);
                if (ch != 10 && ch != -1) bad_line("more bytes than its count");
                if (count == 0) begin
                    // A frame of zero bytes: the end marker alone.
                    in_valid = 1'b0;
                    in_last = 1'b1;
                    while (!in_ready) @(negedge clk);
                    @(negedge clk);
                end
                in_valid = 1'b0;
                in_last = 1'b0;
                while (!done) @(negedge clk);
                n = n + 1;
                if (reason != code[3:0]) begin
                    m = m + 1;
                    $display("DISAGREE id=%0d expected=%0d got=%0d", id, code, reason);
                end
            end
        end
        $fclose(fd);
        $display("%0d vectors, %0d disagreements", n, m);
        $finish;
    end
endmodule
`default_nettype wire
