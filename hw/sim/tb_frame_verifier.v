// Testbench of hw/rtl/frame_verifier.v over a vector file (hw/FRAMES.md, "Test vectors"):
// `vvp tb +vectors=FILE`. Each vector's bytes are streamed into the verifier (honouring
// `in_ready`), the frame is ended with `in_last`, and the verifier's `reason` is compared with
// the vector's expected code. Prints `DISAGREE id=<id> expected=<e> got=<g>` per disagreement,
// then `<N> vectors, <M> disagreements`; `ERROR ...` and exit status 1 (via $fatal) when the file
// cannot be opened or a line cannot be parsed.
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
    integer fd, ch, r, id, code, count, i, b, n, m;
    reg [8*4096-1:0] skip;

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
        @(negedge clk);
        @(negedge clk);
        rst = 1'b0;
        ch = $fgetc(fd);
        while (ch != -1) begin
            if (ch == "#") begin
                // A comment: skip to the end of the line.
                while (ch != -1 && ch != 10) ch = $fgetc(fd);
            end else if (ch == 10 || ch == 13 || ch == " ") begin
                ch = $fgetc(fd);
            end else begin
                r = $ungetc(ch, fd);
                r = $fscanf(fd, "%d %d %d", id, code, count);
                if (r != 3) begin
                    $display("ERROR %0s: unreadable vector after %0d vectors", path, n);
                    $fatal(1);
                end
                for (i = 0; i < count; i = i + 1) begin
                    r = $fscanf(fd, "%h", b);
                    if (r != 1) begin
                        $display("ERROR %0s: vector %0d: byte %0d unreadable", path, id, i);
                        $fatal(1);
                    end
                    in_valid = 1'b1;
                    in_data = b[7:0];
                    in_last = (i == count - 1);
                    while (!in_ready) @(negedge clk);
                    @(negedge clk);
                end
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
                if (reason != code[3:0] || code < 0 || code > 15) begin
                    m = m + 1;
                    $display("DISAGREE id=%0d expected=%0d got=%0d", id, code, reason);
                end
                ch = $fgetc(fd);
            end
        end
        $fclose(fd);
        $display("%0d vectors, %0d disagreements", n, m);
        $finish;
    end
endmodule
`default_nettype wire
